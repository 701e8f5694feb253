/*
 * larson: a server simulation in the manner of Larson and Krishnan's benchmark ("Memory
 * allocation for long-running server applications", ISMM 1998), with a fixed amount of
 * work instead of a fixed time so that wall time can be compared.
 *
 *   larson THREADS GENERATIONS OPS BLOCKS MIN MAX [SEED]
 *
 * A shared array holds THREADS x BLOCKS block pointers; the main thread fills it first.
 * THREADS chains of worker threads then run side by side: chain i owns the i-th part of
 * the array (BLOCKS slots). A worker does OPS replacements (free the block at a random
 * slot of its part, allocate one of a random size, uniform in [MIN, MAX], in its place),
 * then starts its successor and exits: the successor, a new thread, frees the blocks its
 * predecessor allocated, as a server's new connection thread frees what an old one left.
 * Each chain has GENERATIONS workers; the threads are replaced at staggered times. At the
 * end the main thread frees what is left.
 *
 * Every block carries a tag from its chain's PRNG (which a successor continues); its size
 * is a function of the tag, and the block holds the tag, one byte per 4 KiB page and a last
 * byte derived from it, checked before the block is freed. The checksum line sums a hash
 * of every freed block's tag: equal under every correct allocator.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "larson"
#include "common.h"

typedef struct {
	size_t index;
	size_t generation;
	uint64_t rng;
	void **slots; /* this chain's part of the shared array */
	uint64_t freed_sum, freed_count, allocated_sum, errors;
} chain_t;

static size_t g_threads, g_generations, g_ops, g_blocks, g_min, g_max;
static void **g_array;
static chain_t *g_chains;
static pthread_mutex_t g_done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_done_cond = PTHREAD_COND_INITIALIZER;
static size_t g_done;
static int g_spawn_failed;

static size_t size_of_tag(uint64_t tag) {
	return g_min + (size_t)((tag >> 12) % (g_max - g_min + 1));
}

static void *make_block(chain_t *c) {
	uint64_t tag = rng_next(&c->rng);
	size_t size = size_of_tag(tag);
	unsigned char *p = malloc(size);
	if (!p) {
		fprintf(stderr, "larson: malloc(%zu) failed\n", size);
		exit(3);
	}
	memcpy(p, &tag, sizeof tag);
	for (size_t off = 4096; off + 1 < size; off += 4096)
		p[off] = (unsigned char)(tag >> 16);
	p[size - 1] = (unsigned char)(tag ^ 0xa5);
	c->allocated_sum += mix(tag);
	return p;
}

static void release(chain_t *c, void *block) {
	unsigned char *p = block;
	uint64_t tag;
	memcpy(&tag, p, sizeof tag);
	size_t size = size_of_tag(tag);
	int bad = p[size - 1] != (unsigned char)(tag ^ 0xa5);
	for (size_t off = 4096; off + 1 < size && !bad; off += 4096)
		bad = p[off] != (unsigned char)(tag >> 16);
	c->errors += bad;
	c->freed_sum += mix(tag);
	c->freed_count++;
	free(p);
}

static void *worker_main(void *arg) {
	chain_t *c = arg;
	for (size_t i = 0; i < g_ops; i++) {
		size_t k = (size_t)(rng_next(&c->rng) % g_blocks);
		release(c, c->slots[k]);
		c->slots[k] = make_block(c);
	}
	c->generation++;
	if (c->generation < g_generations) {
		pthread_t next;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		int rc = pthread_create(&next, &attr, worker_main, c);
		pthread_attr_destroy(&attr);
		if (rc == 0)
			return NULL;
		pthread_mutex_lock(&g_done_lock);
		g_spawn_failed = 1;
		pthread_mutex_unlock(&g_done_lock);
	}
	pthread_mutex_lock(&g_done_lock);
	g_done++;
	pthread_cond_signal(&g_done_cond);
	pthread_mutex_unlock(&g_done_lock);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 7 || argc > 8) {
		fprintf(stderr, "usage: larson THREADS GENERATIONS OPS BLOCKS MIN MAX [SEED]\n");
		return 2;
	}
	g_threads = arg_size(argv[1], "THREADS");
	g_generations = arg_size(argv[2], "GENERATIONS");
	g_ops = arg_size(argv[3], "OPS");
	g_blocks = arg_size(argv[4], "BLOCKS");
	g_min = arg_size(argv[5], "MIN");
	g_max = arg_size(argv[6], "MAX");
	uint64_t seed = argc > 7 ? arg_size(argv[7], "SEED") : 4141;
	if (g_threads < 1 || g_threads > 1024 || g_generations < 1 || g_blocks < 1 ||
	    g_min < 16 || g_max < g_min) {
		fprintf(stderr, "larson: need 1<=THREADS<=1024, GENERATIONS>=1, BLOCKS>=1, 16<=MIN<=MAX (a block holds an 8-byte tag and a last byte)\n");
		return 2;
	}
	g_array = calloc(g_threads * g_blocks, sizeof(void *));
	g_chains = calloc(g_threads, sizeof(chain_t));
	if (!g_array || !g_chains) {
		fprintf(stderr, "larson: out of memory\n");
		return 3;
	}
	for (size_t i = 0; i < g_threads; i++) {
		chain_t *c = &g_chains[i];
		c->index = i;
		c->rng = seed * 0x100000001b3ULL + i;
		c->slots = g_array + i * g_blocks;
		/* The main thread allocates the initial blocks: the first workers free them. */
		for (size_t k = 0; k < g_blocks; k++)
			c->slots[k] = make_block(c);
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (size_t i = 0; i < g_threads; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, worker_main, &g_chains[i]) != 0) {
			fprintf(stderr, "larson: pthread_create failed\n");
			return 3;
		}
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_lock(&g_done_lock);
	while (g_done < g_threads)
		pthread_cond_wait(&g_done_cond, &g_done_lock);
	pthread_mutex_unlock(&g_done_lock);
	if (g_spawn_failed) {
		fprintf(stderr, "larson: pthread_create failed in a worker\n");
		return 3;
	}

	uint64_t sum = 0, count = 0, allocated = 0, errors = 0, generations = 0;
	for (size_t i = 0; i < g_threads; i++) {
		chain_t *c = &g_chains[i];
		for (size_t k = 0; k < g_blocks; k++)
			release(c, c->slots[k]);
		sum += c->freed_sum;
		count += c->freed_count;
		allocated += c->allocated_sum;
		errors += c->errors;
		generations += c->generation;
	}
	if (sum != allocated)
		errors++;
	printf("larson threads=%zu generations=%zu ops=%zu blocks=%zu size=%zu..%zu\n", g_threads,
	       g_generations, g_ops, g_blocks, g_min, g_max);
	printf("checksum %016llx blocks %llu generations %llu errors %llu\n", (unsigned long long)sum,
	       (unsigned long long)count, (unsigned long long)generations, (unsigned long long)errors);
	free(g_array);
	free(g_chains);
	return errors ? 1 : 0;
}
