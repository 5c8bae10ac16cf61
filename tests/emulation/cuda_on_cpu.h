// Runs CUDA kernels on the CPU for tests: each launch loops over blocks and threads in order.
// Valid for kernels whose threads do not communicate between barriers, and for block kernels
// launched with one thread per block (then __syncthreads has nothing to wait for).
#pragma once
#include <algorithm>
#include <cstring>
using std::max;
using std::min;

struct dim3_ { unsigned x, y, z; };
static dim3_ blockIdx, threadIdx, blockDim, gridDim;
static float nsa_shared[1 << 16];  // the dynamic shared memory of the running block

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__
#define __syncthreads() ((void)0)
#define s_u nsa_shared
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }

#define LAUNCH(grid_x, grid_y, grid_z, block_x, block_y, call)                         \
    do {                                                                               \
        gridDim = {(unsigned)(grid_x), (unsigned)(grid_y), (unsigned)(grid_z)};        \
        blockDim = {(unsigned)(block_x), (unsigned)(block_y), 1u};                     \
        for (blockIdx.z = 0; blockIdx.z < gridDim.z; ++blockIdx.z)                     \
        for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)                     \
        for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)                     \
        for (threadIdx.y = 0; threadIdx.y < blockDim.y; ++threadIdx.y)                 \
        for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x) { call; }        \
    } while (0)
