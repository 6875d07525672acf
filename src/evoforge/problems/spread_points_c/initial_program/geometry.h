/* geometry.h: helpers for kernel.c (context: this file has no EVOLVE block and never changes). */
#ifndef GEOMETRY_H
#define GEOMETRY_H

#include <math.h>

/* xorshift32: a small deterministic generator (state must not be 0). */
static inline unsigned next_random(unsigned *state) {
    unsigned x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* Uniform in [0, 1). */
static inline double uniform01(unsigned *state) {
    return (next_random(state) >> 8) * (1.0 / 16777216.0);
}

static inline double clamp01(double v) {
    return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
}

/* Squared distance from (x, y) to the nearest point of xy other than point `skip`. */
static inline double nearest2(const double *xy, int n, int skip, double x, double y) {
    double best = 1e300;
    for (int j = 0; j < n; j++) {
        if (j == skip) continue;
        double dx = xy[2 * j] - x, dy = xy[2 * j + 1] - y;
        double d = dx * dx + dy * dy;
        if (d < best) best = d;
    }
    return best;
}

/* Smallest squared distance between two of the n points. */
static inline double min_pair2(const double *xy, int n) {
    double best = 1e300;
    for (int i = 0; i < n; i++) {
        double d = nearest2(xy, n, i, xy[2 * i], xy[2 * i + 1]);
        if (d < best) best = d;
    }
    return best;
}

#endif
