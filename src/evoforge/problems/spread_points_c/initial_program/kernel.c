/* kernel.c: the local search, compiled by the evaluator into libkernel.so (loaded by driver.py). */
#include "geometry.h"

/* EVOLVE-BLOCK-START */
/* Moves one random point at a time to a random nearby spot when that does not bring it closer
   to its nearest neighbour; the step shrinks linearly. Returns the final minimum distance. */
double improve(double *xy, int n, int iters, double step, unsigned seed) {
    unsigned s = seed ? seed : 1u;
    for (int t = 0; t < iters; t++) {
        int i = (int)(next_random(&s) % (unsigned)n);
        double scale = step * (1.0 - (double)t / iters) + 0.0001;
        double nx = clamp01(xy[2 * i] + scale * (2.0 * uniform01(&s) - 1.0));
        double ny = clamp01(xy[2 * i + 1] + scale * (2.0 * uniform01(&s) - 1.0));
        double before = nearest2(xy, n, i, xy[2 * i], xy[2 * i + 1]);
        double after = nearest2(xy, n, i, nx, ny);
        if (after >= before) {
            xy[2 * i] = nx;
            xy[2 * i + 1] = ny;
        }
    }
    return sqrt(min_pair2(xy, n));
}
/* EVOLVE-BLOCK-END */
