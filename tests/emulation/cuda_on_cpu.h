// Runs CUDA kernels on the CPU for tests, under the device's rules that decide correctness:
//   - every thread of a block is an OS thread of its own;
//   - __syncthreads() is a real barrier of the block; a thread that has returned from the kernel
//     no longer counts (as on Volta and later), so early exits cannot deadlock the others;
//   - blockIdx, threadIdx, blockDim and gridDim are per thread;
//   - dynamic shared memory (extern __shared__) is one allocation per block of exactly the bytes
//     the launch asked for, so that AddressSanitizer sees an overrun.
// In a kernel with barriers or shared memory the threads of a block are all alive together and
// blocks run one after another (CUDA promises no order between blocks). A kernel without them
// shares nothing between its threads, so each thread runs its part of every block at its own
// pace and blocks overlap, as they do on the device.
// Kernel source is rewritten by tests/emulation/harness.py before it is compiled with this
// (extern __shared__ arrays become pointers to the block's buffer), and must be built with
// -ffp-contract=off, so that __fadd_rn/__fmul_rn stay separate roundings as on the device.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "launch_abi.h"

using std::max;
using std::min;

struct dim3 {
    unsigned x, y, z;
};
typedef dim3 uint3;

static thread_local uint3 threadIdx, blockIdx;
static thread_local dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __syncthreads() nsa_emu::syncthreads()

// The device's round-to-nearest intrinsics: one IEEE rounding each, never fused with a neighbour.
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }

namespace nsa_emu {

// A barrier over the threads still running. wait(): arrive and block until every live thread has
// arrived. leave(): the calling thread is done and stops counting; if everyone left is already
// waiting, they are released. Arrivals are counted under a mutex; waiters sleep on the atomic
// generation (a futex), so that a release does not make 255 threads queue for the mutex again.
// Happens-before, as ThreadSanitizer sees it: every arrival's unlock -> the last arrival's lock ->
// its release store of the generation -> each waiter's acquire load.
class Barrier {
public:
    void reset(unsigned threads)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_ = threads;
        arrived_ = 0;
    }
    void wait()
    {
        unsigned generation;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            generation = generation_.load(std::memory_order_relaxed);
            if (++arrived_ == live_) {
                release(generation);
                return;
            }
        }
        while (generation_.load(std::memory_order_acquire) == generation)
            generation_.wait(generation, std::memory_order_acquire);
    }
    void leave()
    {
        std::lock_guard<std::mutex> lock(mutex_);
        --live_;
        if (arrived_ > 0 && arrived_ == live_)
            release(generation_.load(std::memory_order_relaxed));
    }

private:
    void release(unsigned generation)
    {
        arrived_ = 0;
        generation_.store(generation + 1, std::memory_order_release);
        generation_.notify_all();
    }
    std::mutex mutex_;
    unsigned live_ = 0, arrived_ = 0;
    std::atomic<unsigned> generation_{0};
};

static thread_local Barrier* block_barrier = nullptr;
static thread_local unsigned char* block_shared = nullptr;

inline void syncthreads()
{
    if (!block_barrier) {
        // The generated launcher decided from the source that this kernel never synchronises.
        std::fprintf(stderr, "__syncthreads() in a kernel launched as barrier-free\n");
        std::abort();
    }
    block_barrier->wait();
}
inline void* dynamic_shared() { return block_shared; }

// Dynamic shared memory of one block: exactly the bytes asked for, so that AddressSanitizer sees
// an overrun. Built with NSA_GUARD_SHARED (the in-process library, where no sanitizer runs), the
// buffer sits between two 48 KiB bands of 0xA5 instead, so that an overrun cannot corrupt the
// host process's heap, and free_shared reports whether a band was written.
#ifdef NSA_GUARD_SHARED
constexpr std::size_t kSharedGuard = 49152;
#else
constexpr std::size_t kSharedGuard = 0;
#endif

inline unsigned char* alloc_shared(std::size_t bytes)
{
    auto* p = static_cast<unsigned char*>(std::malloc(bytes + 2 * kSharedGuard));
    if constexpr (kSharedGuard > 0) {
        std::memset(p, 0xA5, kSharedGuard);
        std::memset(p + kSharedGuard + bytes, 0xA5, kSharedGuard);
    }
    return p + kSharedGuard;
}

inline bool free_shared(unsigned char* p, std::size_t bytes)
{
    bool intact = true;
    for (std::size_t i = 0; i < kSharedGuard; ++i)
        intact = intact && p[i - kSharedGuard] == 0xA5 && p[bytes + i] == 0xA5;
    std::free(p - kSharedGuard);
    return intact;
}

// The limits a launch must respect; the Python side refuses violations with a message first.
inline bool valid(dim3 grid, dim3 block, std::size_t shared_bytes)
{
    const unsigned long long threads = 1ull * block.x * block.y * block.z;
    return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535 &&
           grid.z <= 65535 && threads >= 1 && threads <= 1024 && block.z <= 64 && shared_bytes <= 49152;
}

// Runs kernel() as gridDim blocks of blockDim threads: one OS thread per thread of a block, the
// same threads running every block in turn (x fastest, then y, then z).
// cooperative (the kernel has barriers or shared memory): the threads of a block start and end
// it together. A team barrier separates blocks; before it, thread 0 allocates the next block's
// shared memory and resets its __syncthreads barrier (two of each alternate), after it, thread 0
// frees the finished block's memory.
// Otherwise each thread goes through its blocks at its own pace: threads of different blocks
// overlap, so ThreadSanitizer also sees races between blocks (except between the threads with the
// same threadIdx, which are one OS thread).
// Returns 0, 1 for a configuration CUDA would refuse, 2 if a block wrote beyond its shared memory
// (seen only with NSA_GUARD_SHARED).
inline int launch(dim3 grid, dim3 block, std::size_t shared_bytes, bool cooperative,
                  const std::function<void()>& kernel)
{
    if (!valid(grid, block, shared_bytes))
        return 1;
    const unsigned n = block.x * block.y * block.z;
    const unsigned long long blocks = 1ull * grid.x * grid.y * grid.z;
    Barrier team, sync[2];
    unsigned char* shared[2] = {nullptr, nullptr};
    bool overrun = false;  // written by thread 0 only, read after the join
    team.reset(n);
    if (cooperative) {
        shared[0] = alloc_shared(shared_bytes);
        sync[0].reset(n);
    }
    auto thread_main = [&](unsigned t) {
        threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
        blockDim = block;
        gridDim = grid;
        for (unsigned long long b = 0; b < blocks; ++b) {
            blockIdx = {static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                        static_cast<unsigned>(b / (1ull * grid.x * grid.y))};
            if (!cooperative) {
                kernel();
                continue;
            }
            Barrier& current = sync[b % 2];
            block_barrier = &current;
            block_shared = shared[b % 2];
            kernel();
            current.leave();
            if (t == 0 && b + 1 < blocks) {
                shared[(b + 1) % 2] = alloc_shared(shared_bytes);
                sync[(b + 1) % 2].reset(n);
            }
            team.wait();
            if (t == 0 && !free_shared(shared[b % 2], shared_bytes))
                overrun = true;
        }
        block_barrier = nullptr;
        block_shared = nullptr;
    };
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned t = 0; t < n; ++t)
        threads.emplace_back(thread_main, t);
    for (auto& th : threads)
        th.join();
    return overrun ? 2 : 0;
}

}  // namespace nsa_emu
