// Iterative solvers of the batched 5-point Poisson problem with zero Dirichlet boundary:
//     u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1] - 4 u[i][j] = rhs[i][j]
//
// Layout: u, scratch, rhs are float32 [planes][R][K], row-major and contiguous; plane p belongs
// to item p / C (C channels per item). sizes is int32 [items][2]: the rows and columns of the
// item's interior, which sits in the top-left corner of its planes; cells beyond are never read
// or written and act as the boundary. omega is float32 [items].
//
// One block per plane (grid x = planes), its threads striding over the plane's cells, and every
// iteration of the solve inside that one launch, separated by block barriers: a batch costs one
// launch per solver call instead of one (or two) per sweep. The plane lives in dynamic shared
// memory when it fits (in_shared != 0: R * K floats for SOR, 2 * R * K for Jacobi, at most 48 KiB
// on Pascal), otherwise it is updated in global memory, where __syncthreads() also orders the
// block's writes and reads.
//
// Arithmetic is written with __fadd_rn/__fmul_rn so that it is not contracted into FMAs and
// matches the torch twin in nsa_fast/blend/solvers.py bit for bit.

__device__ __forceinline__ float neighbour_sum(const float* u, long long idx, int i, int j, int nr, int nc, int K)
{
    float s = 0.0f;
    if (i > 0) s = __fadd_rn(s, u[idx - K]);
    if (i + 1 < nr) s = __fadd_rn(s, u[idx + K]);
    if (j > 0) s = __fadd_rn(s, u[idx - 1]);
    if (j + 1 < nc) s = __fadd_rn(s, u[idx + 1]);
    return s;
}

// Copy the item's interior cells between two plane buffers of row length K.
__device__ __forceinline__ void copy_cells(float* to, const float* from, int cells, int nc, int K)
{
    for (int t = threadIdx.x; t < cells; t += blockDim.x) {
        const int k = (t / nc) * K + t % nc;
        to[k] = from[k];
    }
}

// All Jacobi sweeps of one plane, two buffers: next = (neighbours(cur) - rhs) / 4. The result
// ends in u; scratch is a second plane-sized global buffer, used when the two do not fit in
// shared memory.
extern "C" __global__ void jacobi_block(float* __restrict__ u, float* __restrict__ scratch,
                                        const float* __restrict__ rhs, const int* __restrict__ sizes,
                                        int C, int R, int K, int iterations, int in_shared)
{
    extern __shared__ float s_planes[];
    const int p = blockIdx.x;
    const int item = p / C;
    const int nr = sizes[2 * item], nc = sizes[2 * item + 1];
    const long long base = (long long)p * R * K;
    const int cells = nr * nc;
    float* cur = in_shared ? s_planes : u + base;
    float* next = in_shared ? s_planes + R * K : scratch + base;
    if (in_shared) copy_cells(cur, u + base, cells, nc, K);
    __syncthreads();
    for (int it = 0; it < iterations; ++it) {
        for (int t = threadIdx.x; t < cells; t += blockDim.x) {
            const int i = t / nc, j = t % nc;
            const int k = i * K + j;
            next[k] = __fmul_rn(__fadd_rn(neighbour_sum(cur, k, i, j, nr, nc, K), -rhs[base + k]), 0.25f);
        }
        __syncthreads();
        float* done = next;
        next = cur;
        cur = done;
    }
    if (cur != u + base) copy_cells(u + base, cur, cells, nc, K);
}

// All red-black SOR iterations of one plane, in place: in each half-sweep the cells with
// (i + j) % 2 == colour move towards their Gauss-Seidel value; they read only cells of the other
// colour, so there is no race within a half-sweep.
extern "C" __global__ void sor_block(float* __restrict__ u, const float* __restrict__ rhs,
                                     const int* __restrict__ sizes, const float* __restrict__ omega,
                                     int C, int R, int K, int iterations, int in_shared)
{
    extern __shared__ float s_plane[];
    const int p = blockIdx.x;
    const int item = p / C;
    const int nr = sizes[2 * item], nc = sizes[2 * item + 1];
    const float w = omega[item];
    const long long base = (long long)p * R * K;
    const int cells = nr * nc;
    float* plane = in_shared ? s_plane : u + base;
    if (in_shared) copy_cells(plane, u + base, cells, nc, K);
    __syncthreads();
    for (int it = 0; it < iterations; ++it) {
        for (int colour = 0; colour < 2; ++colour) {
            for (int t = threadIdx.x; t < cells; t += blockDim.x) {
                const int i = t / nc, j = t % nc;
                if (((i + j) & 1) != colour) continue;
                const int k = i * K + j;
                const float gs = __fmul_rn(__fadd_rn(neighbour_sum(plane, k, i, j, nr, nc, K),
                                                     -rhs[base + k]), 0.25f);
                plane[k] = __fadd_rn(plane[k], __fmul_rn(w, __fadd_rn(gs, -plane[k])));
            }
            __syncthreads();
        }
    }
    if (in_shared) copy_cells(u + base, plane, cells, nc, K);
}
