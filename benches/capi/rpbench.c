/*
 * rpbench: the allocation pattern of rpmalloc-benchmark, as a plain C program that uses
 * malloc/free (so the allocator is whatever the process has: glibc or an LD_PRELOAD one).
 *
 *   rpbench THREADS LOOPS SLOTS OPS MIN MAX CROSS [SEED]
 *
 * Each thread owns SLOTS block pointers. One loop of a thread:
 *   - frees the blocks it was handed by other threads (its inbox),
 *   - frees OPS blocks at scattered slots (one prime stride; empty slots are skipped),
 *   - allocates OPS new blocks of a random size in [MIN, MAX] with linear falloff (small
 *     sizes likeliest) into scattered slots (another stride; an occupant is freed first),
 *   - every CROSS loops (0: never), takes OPS blocks out of its slots and hands them, as
 *     one batch, to another thread (round robin), which frees them.
 * A pass is LOOPS loops; after a pass the threads meet, empty their inboxes and free all
 * their blocks. The threads run two passes, exit, and new threads run two more.
 *
 * Every block carries a tag from the thread's PRNG; its size is a function of the tag, and
 * the block holds the tag, one byte per 4 KiB page and a last byte derived from it. The
 * thread that frees a block checks all of that first. The checksum line sums a hash of
 * every freed block's tag: the same for every correct allocator (the set of blocks does not
 * depend on timing), different if blocks overlap or get corrupted.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "rpbench"
#include "common.h"

#define PASSES 2
#define ROUNDS 2

typedef struct batch {
	struct batch *next;
	size_t count;
	void *blocks[];
} batch_t;

typedef struct {
	uint64_t sum; /* hash sum of the freed blocks */
	uint64_t count;
	uint64_t errors;
} acc_t;

typedef struct worker {
	size_t index;
	uint64_t rng;
	void **slots;
	pthread_mutex_t inbox_lock;
	batch_t *inbox;
	size_t next_target;
	acc_t acc;
	uint64_t allocated_sum; /* hash sum of the blocks it allocated */
	pthread_t thread;
} worker_t;

static size_t g_threads, g_loops, g_slots, g_ops, g_min, g_max, g_cross;
static size_t g_free_stride, g_alloc_stride, g_cross_stride;
static worker_t *g_workers;
static pthread_barrier_t g_barrier;

/* Linear falloff: the smaller of two uniform draws has density 2(1-x) on [0,1). */
static size_t size_of_tag(uint64_t tag) {
	size_t range = g_max - g_min + 1;
	size_t a = (size_t)((tag >> 8) % range);
	size_t b = (size_t)((tag >> 36) % range);
	return g_min + (a < b ? a : b);
}

static void *make_block(worker_t *w) {
	uint64_t tag = rng_next(&w->rng);
	size_t size = size_of_tag(tag);
	unsigned char *p = malloc(size);
	if (!p) {
		fprintf(stderr, "rpbench: malloc(%zu) failed\n", size);
		exit(3);
	}
	memcpy(p, &tag, sizeof tag);
	unsigned char page_byte = (unsigned char)(tag >> 16);
	for (size_t off = 4096; off + 1 < size; off += 4096)
		p[off] = page_byte;
	p[size - 1] = (unsigned char)(tag ^ 0x5a);
	w->allocated_sum += mix(tag);
	return p;
}

static void release(acc_t *acc, void *block) {
	unsigned char *p = block;
	uint64_t tag;
	memcpy(&tag, p, sizeof tag);
	size_t size = size_of_tag(tag);
	int bad = p[size - 1] != (unsigned char)(tag ^ 0x5a);
	unsigned char page_byte = (unsigned char)(tag >> 16);
	for (size_t off = 4096; off + 1 < size && !bad; off += 4096)
		bad = p[off] != page_byte;
	if (bad)
		acc->errors++;
	acc->sum += mix(tag);
	acc->count++;
	free(p);
}

static void drain_inbox(worker_t *w) {
	pthread_mutex_lock(&w->inbox_lock);
	batch_t *b = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	while (b) {
		batch_t *next = b->next;
		for (size_t i = 0; i < b->count; i++)
			release(&w->acc, b->blocks[i]);
		free(b);
		b = next;
	}
}

static void hand_off(worker_t *w, size_t *cross_idx) {
	batch_t *b = malloc(sizeof(batch_t) + g_ops * sizeof(void *));
	if (!b) {
		fprintf(stderr, "rpbench: batch malloc failed\n");
		exit(3);
	}
	b->count = 0;
	/* Visit at most SLOTS positions so a nearly empty thread does not spin. */
	for (size_t tries = 0; b->count < g_ops && tries < g_slots; tries++) {
		size_t j = *cross_idx;
		*cross_idx = (*cross_idx + g_cross_stride) % g_slots;
		if (w->slots[j]) {
			b->blocks[b->count++] = w->slots[j];
			w->slots[j] = NULL;
		}
	}
	size_t target = (w->index + 1 + w->next_target) % g_threads;
	w->next_target = (w->next_target + 1) % (g_threads - 1);
	worker_t *t = &g_workers[target];
	pthread_mutex_lock(&t->inbox_lock);
	b->next = t->inbox;
	t->inbox = b;
	pthread_mutex_unlock(&t->inbox_lock);
}

static void *worker_main(void *arg) {
	worker_t *w = arg;
	w->slots = calloc(g_slots, sizeof(void *));
	if (!w->slots) {
		fprintf(stderr, "rpbench: slots calloc failed\n");
		exit(3);
	}
	size_t free_idx = w->index % g_slots;
	size_t alloc_idx = (w->index * 7) % g_slots;
	size_t cross_idx = (w->index * 13) % g_slots;
	for (size_t pass = 0; pass < PASSES; pass++) {
		for (size_t loop = 0; loop < g_loops; loop++) {
			drain_inbox(w);
			for (size_t i = 0; i < g_ops; i++) {
				if (w->slots[free_idx]) {
					release(&w->acc, w->slots[free_idx]);
					w->slots[free_idx] = NULL;
				}
				free_idx = (free_idx + g_free_stride) % g_slots;
			}
			for (size_t i = 0; i < g_ops; i++) {
				if (w->slots[alloc_idx])
					release(&w->acc, w->slots[alloc_idx]);
				w->slots[alloc_idx] = make_block(w);
				alloc_idx = (alloc_idx + g_alloc_stride) % g_slots;
			}
			if (g_cross && g_threads > 1 && loop % g_cross == g_cross - 1)
				hand_off(w, &cross_idx);
		}
		/* No thread hands anything off after this point of the pass. */
		pthread_barrier_wait(&g_barrier);
		drain_inbox(w);
		for (size_t j = 0; j < g_slots; j++) {
			if (w->slots[j]) {
				release(&w->acc, w->slots[j]);
				w->slots[j] = NULL;
			}
		}
		pthread_barrier_wait(&g_barrier);
	}
	free(w->slots);
	w->slots = NULL;
	return NULL;
}

/* A prime that does not divide n, from a list, skipping `skip` good ones. */
static size_t stride_for(size_t n, int skip) {
	static const size_t primes[] = {17, 31, 61, 127, 257, 509, 1021, 2053, 4093, 8191, 16381};
	for (size_t i = 0; i < sizeof primes / sizeof primes[0]; i++) {
		if (n % primes[i] != 0 && primes[i] < n) {
			if (skip-- == 0)
				return primes[i];
		}
	}
	return 1;
}

int main(int argc, char **argv) {
	if (argc < 8 || argc > 9) {
		fprintf(stderr, "usage: rpbench THREADS LOOPS SLOTS OPS MIN MAX CROSS [SEED]\n");
		return 2;
	}
	g_threads = arg_size(argv[1], "THREADS");
	g_loops = arg_size(argv[2], "LOOPS");
	g_slots = arg_size(argv[3], "SLOTS");
	g_ops = arg_size(argv[4], "OPS");
	g_min = arg_size(argv[5], "MIN");
	g_max = arg_size(argv[6], "MAX");
	g_cross = arg_size(argv[7], "CROSS");
	uint64_t seed = argc > 8 ? arg_size(argv[8], "SEED") : 42;
	if (g_threads < 1 || g_threads > 256 || g_slots < 64 || g_ops < 1 || g_ops > g_slots ||
	    g_min < 16 || g_max < g_min) {
		fprintf(stderr, "rpbench: need 1<=THREADS<=256, SLOTS>=64, 1<=OPS<=SLOTS, 16<=MIN<=MAX (a block holds an 8-byte tag and a last byte)\n");
		return 2;
	}
	g_free_stride = stride_for(g_slots, 0);
	g_alloc_stride = stride_for(g_slots, 1);
	g_cross_stride = stride_for(g_slots, 2);

	g_workers = calloc(g_threads, sizeof(worker_t));
	for (size_t i = 0; i < g_threads; i++) {
		g_workers[i].index = i;
		g_workers[i].rng = seed * 0x100000001b3ULL + i;
		pthread_mutex_init(&g_workers[i].inbox_lock, NULL);
	}
	pthread_barrier_init(&g_barrier, NULL, (unsigned)g_threads);
	for (int round = 0; round < ROUNDS; round++) {
		for (size_t i = 0; i < g_threads; i++) {
			if (pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]) != 0) {
				fprintf(stderr, "rpbench: pthread_create failed\n");
				return 3;
			}
		}
		for (size_t i = 0; i < g_threads; i++)
			pthread_join(g_workers[i].thread, NULL);
	}

	acc_t total = {0, 0, 0};
	uint64_t allocated = 0;
	for (size_t i = 0; i < g_threads; i++) {
		total.sum += g_workers[i].acc.sum;
		total.count += g_workers[i].acc.count;
		total.errors += g_workers[i].acc.errors;
		allocated += g_workers[i].allocated_sum;
	}
	if (allocated != total.sum)
		total.errors++;
	printf("rpbench threads=%zu loops=%zu slots=%zu ops=%zu size=%zu..%zu cross=%zu\n", g_threads,
	       g_loops, g_slots, g_ops, g_min, g_max, g_cross);
	printf("checksum %016llx blocks %llu errors %llu\n", (unsigned long long)total.sum,
	       (unsigned long long)total.count, (unsigned long long)total.errors);
	pthread_barrier_destroy(&g_barrier);
	free(g_workers);
	return total.errors ? 1 : 0;
}
