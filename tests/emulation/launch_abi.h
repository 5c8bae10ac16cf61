// What a compiled kernel file offers its callers (the ctypes side and the standalone driver):
// one entry per extern "C" __global__ kernel, with a launcher taking the arguments as CUDA's
// cuLaunchKernel does (an array of pointers to the argument values).
#pragma once
#include <type_traits>

namespace nsa_emu {

typedef int (*Launcher)(const unsigned* grid, const unsigned* block, unsigned long long shared_bytes,
                        void* const* args);

struct KernelEntry {
    const char* name;
    int nparams;
    const int* arg_bytes;  // per parameter: 0 for a pointer, else the scalar's size
    Launcher launch;
};

template <class T>
constexpr int arg_bytes()
{
    return std::is_pointer<T>::value ? 0 : static_cast<int>(sizeof(T));
}

}  // namespace nsa_emu
