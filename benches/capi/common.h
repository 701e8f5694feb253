/* Helpers the C workloads share. Each defines PROG (its name, for messages) and
 * includes this after the C library's headers. */
#ifndef CAPI_BENCH_COMMON_H
#define CAPI_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The next pseudo-random number of the stream whose state is *s. */
static uint64_t rng_next(uint64_t *s) {
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A 64-bit mixer (murmur3's finaliser): a seed or tag from a counter. */
static uint64_t mix(uint64_t x) {
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* A non-negative decimal command-line argument; exits 2 with a message otherwise. */
static size_t arg_size(const char *s, const char *name) {
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0') {
		fprintf(stderr, "%s: bad %s: %s\n", PROG, name, s);
		exit(2);
	}
	return (size_t)v;
}

#endif
