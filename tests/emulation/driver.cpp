// Standalone runner of a compiled kernel file, for sanitizer builds: ThreadSanitizer and
// AddressSanitizer need to own the whole process, which an uninstrumented Python cannot give them.
//
// Usage: driver DIR. DIR/script.txt (written by tests/emulation/harness.py):
//   regions N
//   BYTES                       (N lines; region i is read from DIR/region<i>.bin)
//   launch NAME GX GY GZ BX BY BZ SHARED NARGS
//   ptr REGION OFFSET | val BYTES HEX   (NARGS lines)
//   ...
// Each region gets a heap allocation of exactly its size, so an access beyond the arrays the
// kernel was given is an overrun for AddressSanitizer. After the last launch region i is written
// to DIR/region<i>.out. Exit status: 0, 2 for a malformed script or unknown kernel, 3 for a
// launch the runtime refuses; ThreadSanitizer makes it 66 when it reported anything.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "launch_abi.h"

extern "C" const nsa_emu::KernelEntry nsa_kernel_table[];
extern "C" const int nsa_kernel_count;

namespace {

[[noreturn]] void fail(int status, const std::string& message)
{
    std::cerr << "driver: " << message << std::endl;
    std::exit(status);
}

std::vector<unsigned char> read_file(const std::string& path, std::size_t bytes)
{
    std::vector<unsigned char> data(bytes);
    std::ifstream in(path, std::ios::binary);
    if (!in || !in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(bytes)))
        fail(2, "cannot read " + std::to_string(bytes) + " bytes from " + path);
    return data;
}

const nsa_emu::KernelEntry& find_kernel(const std::string& name)
{
    for (int i = 0; i < nsa_kernel_count; ++i)
        if (name == nsa_kernel_table[i].name)
            return nsa_kernel_table[i];
    fail(2, "no kernel named " + name);
}

struct alignas(8) Scalar {
    unsigned char bytes[8];
};

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
        fail(2, "usage: driver DIR");
    const std::string dir = argv[1];
    std::ifstream script(dir + "/script.txt");
    std::string word;
    std::size_t nregions = 0;
    if (!(script >> word >> nregions) || word != "regions")
        fail(2, "script.txt must start with 'regions N'");
    std::vector<unsigned char*> regions(nregions);
    std::vector<std::size_t> sizes(nregions);
    for (std::size_t i = 0; i < nregions; ++i) {
        if (!(script >> sizes[i]))
            fail(2, "missing the size of region " + std::to_string(i));
        const auto data = read_file(dir + "/region" + std::to_string(i) + ".bin", sizes[i]);
        regions[i] = static_cast<unsigned char*>(std::malloc(sizes[i]));
        if (sizes[i])
            std::memcpy(regions[i], data.data(), sizes[i]);
    }
    while (script >> word) {
        if (word != "launch")
            fail(2, "expected 'launch', got " + word);
        std::string name;
        unsigned grid[3], block[3];
        unsigned long long shared = 0;
        int nargs = 0;
        script >> name >> grid[0] >> grid[1] >> grid[2] >> block[0] >> block[1] >> block[2] >> shared >> nargs;
        if (!script)
            fail(2, "malformed launch line for " + name);
        const auto& kernel = find_kernel(name);
        if (nargs != kernel.nparams)
            fail(2, name + " takes " + std::to_string(kernel.nparams) + " arguments, got " + std::to_string(nargs));
        std::vector<void*> pointers(nargs);
        std::vector<Scalar> scalars(nargs);
        std::vector<void*> args(nargs);
        for (int a = 0; a < nargs; ++a) {
            std::string kind;
            script >> kind;
            if (kind == "ptr") {
                std::size_t region = 0, offset = 0;
                script >> region >> offset;
                if (!script || region >= nregions || offset > sizes[region] || kernel.arg_bytes[a] != 0)
                    fail(2, name + ": bad pointer argument " + std::to_string(a));
                pointers[a] = regions[region] + offset;
                args[a] = &pointers[a];
            } else if (kind == "val") {
                int bytes = 0;
                std::string hex;
                script >> bytes >> hex;
                if (!script || bytes != kernel.arg_bytes[a] || bytes > 8 || hex.size() != 2u * bytes)
                    fail(2, name + ": bad scalar argument " + std::to_string(a));
                for (int b = 0; b < bytes; ++b)
                    scalars[a].bytes[b] = static_cast<unsigned char>(std::stoul(hex.substr(2 * b, 2), nullptr, 16));
                args[a] = scalars[a].bytes;
            } else {
                fail(2, name + ": argument kind must be ptr or val, got " + kind);
            }
        }
        if (kernel.launch(grid, block, shared, args.data()) != 0)
            fail(3, name + ": a launch configuration CUDA refuses");
    }
    for (std::size_t i = 0; i < nregions; ++i) {
        std::ofstream out(dir + "/region" + std::to_string(i) + ".out", std::ios::binary);
        out.write(reinterpret_cast<const char*>(regions[i]), static_cast<std::streamsize>(sizes[i]));
        if (!out)
            fail(2, "cannot write region " + std::to_string(i));
        std::free(regions[i]);
    }
    return 0;
}
