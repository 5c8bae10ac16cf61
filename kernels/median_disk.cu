// Median over a disk footprint (skimage.morphology.disk(RADIUS)) with 'nearest' edges, exactly
// scipy.ndimage.median_filter(x, footprint=disk(RADIUS), mode='nearest') for integer maps.
//
// Layout: x and out are int16 [planes][H][W] holding 0 .. 2^VALUE_BITS - 1, row-major and contiguous. Grid: x over columns,
// y over rows, z over planes. RADIUS and VALUE_BITS (values < 2^VALUE_BITS) come from a
// #define preamble. Each thread selects the rank-(n/2) element of its footprint by a bitwise
// radix select: for each bit from the top, count the footprint values that share the prefix
// found so far and have that bit clear; no sorting, no local arrays.

#ifndef RADIUS
#define RADIUS 5
#endif
#ifndef VALUE_BITS
#define VALUE_BITS 10
#endif

extern "C" __global__ void median_disk(const short* __restrict__ x, short* __restrict__ out,
                                       int H, int W)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y * blockDim.y + threadIdx.y;
    const int p = blockIdx.z;
    if (r >= H || c >= W) return;
    const short* plane = x + (long)p * H * W;
    int n = 0;
    for (int dy = -RADIUS; dy <= RADIUS; ++dy)
        for (int dx = -RADIUS; dx <= RADIUS; ++dx)
            n += (dy * dy + dx * dx <= RADIUS * RADIUS);
    int rank = n / 2;               // 0-based rank of the median among n (odd) values
    unsigned int prefix = 0;        // the median's bits found so far
    for (int bit = VALUE_BITS - 1; bit >= 0; --bit) {
        const unsigned int high = ~((1u << (bit + 1)) - 1u);  // bits above `bit`
        int zeros = 0;              // values with the same high bits and a 0 at `bit`
        for (int dy = -RADIUS; dy <= RADIUS; ++dy) {
            const int rr = min(max(r + dy, 0), H - 1);
            const short* row = plane + (long)rr * W;
            for (int dx = -RADIUS; dx <= RADIUS; ++dx) {
                if (dy * dy + dx * dx > RADIUS * RADIUS) continue;
                const unsigned int v = (unsigned short)row[min(max(c + dx, 0), W - 1)];
                zeros += ((v & high) == (prefix & high)) && !((v >> bit) & 1u);
            }
        }
        if (rank >= zeros) { prefix |= (1u << bit); rank -= zeros; }
    }
    out[(long)p * H * W + (long)r * W + c] = (short)prefix;
}
