// Host launchers of the project's kernels for the CPU emulation (see cuda_on_cpu.h).
#include "cuda_on_cpu.h"
#include "poisson_iter.cu"
#include "median_disk.cu"

static int up(int a, int b) { return (a + b - 1) / b; }

extern "C" void run_jacobi(float* u, float* u_new, const float* rhs, const int* sizes,
                           int planes, int C, int R, int K, int iterations)
{
    for (int it = 0; it < iterations; ++it) {
        LAUNCH(up(K, 32), up(R, 8), planes, 32, 8, jacobi_sweep(u, u_new, rhs, sizes, C, R, K));
        std::swap(u, u_new);
    }
}

extern "C" void run_sor_half(float* u, const float* rhs, const int* sizes, const float* omega,
                             int planes, int C, int R, int K, int iterations)
{
    for (int it = 0; it < iterations; ++it)
        for (int colour = 0; colour < 2; ++colour)
            LAUNCH(up(K, 32), up(R, 8), planes, 32, 8, sor_half_sweep(u, rhs, sizes, omega, C, R, K, colour));
}

extern "C" void run_sor_block(float* u, const float* rhs, const int* sizes, const float* omega,
                              int planes, int C, int R, int K, int iterations)
{
    LAUNCH(planes, 1, 1, 1, 1, sor_block(u, rhs, sizes, omega, C, R, K, iterations));
}

extern "C" void run_median(const short* x, short* out, int planes, int H, int W)
{
    LAUNCH(up(W, 16), up(H, 16), planes, 16, 16, median_disk(x, out, H, W));
}
