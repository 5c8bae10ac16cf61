// Iterative solvers of the batched 5-point Poisson problem with zero Dirichlet boundary:
//     u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1] - 4 u[i][j] = rhs[i][j]
//
// Layout: u, u_new, rhs are float32 [planes][R][K], row-major and contiguous; plane p belongs to
// item p / C (C channels per item). sizes is int32 [items][2]: the rows and columns of the item's
// interior, which sits in the top-left corner of its planes; cells beyond stay 0 and act as the
// boundary. omega is float32 [items]. Grids: x over columns, y over rows, z over planes.
//
// Arithmetic is written with __fadd_rn/__fmul_rn so that it is not contracted into FMAs and
// matches the torch twin in nsa_fast/blend/solvers.py bit for bit.

__device__ __forceinline__ float neighbour_sum(const float* u, long idx, int i, int j, int nr, int nc, int K)
{
    float s = 0.0f;
    if (i > 0) s = __fadd_rn(s, u[idx - K]);
    if (i + 1 < nr) s = __fadd_rn(s, u[idx + K]);
    if (j > 0) s = __fadd_rn(s, u[idx - 1]);
    if (j + 1 < nc) s = __fadd_rn(s, u[idx + 1]);
    return s;
}

// One Jacobi sweep, two buffers: u_new = (neighbours(u) - rhs) / 4.
extern "C" __global__ void jacobi_sweep(const float* __restrict__ u, float* __restrict__ u_new,
                                        const float* __restrict__ rhs, const int* __restrict__ sizes,
                                        int C, int R, int K)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int p = blockIdx.z;
    if (i >= R || j >= K) return;
    const int item = p / C;
    const int nr = sizes[2 * item], nc = sizes[2 * item + 1];
    const long idx = (long)p * R * K + (long)i * K + j;
    if (i >= nr || j >= nc) { u_new[idx] = 0.0f; return; }
    u_new[idx] = __fmul_rn(__fadd_rn(neighbour_sum(u, idx, i, j, nr, nc, K), -rhs[idx]), 0.25f);
}

// One red-black SOR half-sweep in place: cells with (i + j) % 2 == colour move towards their
// Gauss-Seidel value. They read only cells of the other colour, so there is no race.
extern "C" __global__ void sor_half_sweep(float* __restrict__ u, const float* __restrict__ rhs,
                                          const int* __restrict__ sizes, const float* __restrict__ omega,
                                          int C, int R, int K, int colour)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int p = blockIdx.z;
    if (i >= R || j >= K || ((i + j) & 1) != colour) return;
    const int item = p / C;
    const int nr = sizes[2 * item], nc = sizes[2 * item + 1];
    if (i >= nr || j >= nc) return;
    const long idx = (long)p * R * K + (long)i * K + j;
    const float gs = __fmul_rn(__fadd_rn(neighbour_sum(u, idx, i, j, nr, nc, K), -rhs[idx]), 0.25f);
    u[idx] = __fadd_rn(u[idx], __fmul_rn(omega[item], __fadd_rn(gs, -u[idx])));
}

// All SOR iterations of one plane in one block, the plane held in shared memory (R * K floats,
// at most 48 KiB per block on Pascal). One block per plane; threads stride over the cells.
extern "C" __global__ void sor_block(float* __restrict__ u, const float* __restrict__ rhs,
                                     const int* __restrict__ sizes, const float* __restrict__ omega,
                                     int C, int R, int K, int iterations)
{
    extern __shared__ float s_u[];
    const int p = blockIdx.x;
    const int item = p / C;
    const int nr = sizes[2 * item], nc = sizes[2 * item + 1];
    const float w = omega[item];
    const long base = (long)p * R * K;
    const int cells = nr * nc;
    for (int t = threadIdx.x; t < cells; t += blockDim.x) {
        const int i = t / nc, j = t % nc;
        s_u[i * K + j] = u[base + i * K + j];
    }
    __syncthreads();
    for (int it = 0; it < iterations; ++it) {
        for (int colour = 0; colour < 2; ++colour) {
            for (int t = threadIdx.x; t < cells; t += blockDim.x) {
                const int i = t / nc, j = t % nc;
                if (((i + j) & 1) != colour) continue;
                const int k = i * K + j;
                const float gs = __fmul_rn(__fadd_rn(neighbour_sum(s_u, k, i, j, nr, nc, K),
                                                     -rhs[base + k]), 0.25f);
                s_u[k] = __fadd_rn(s_u[k], __fmul_rn(w, __fadd_rn(gs, -s_u[k])));
            }
            __syncthreads();
        }
    }
    for (int t = threadIdx.x; t < cells; t += blockDim.x) {
        const int i = t / nc, j = t % nc;
        u[base + i * K + j] = s_u[i * K + j];
    }
}
