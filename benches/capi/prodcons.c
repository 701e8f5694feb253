/*
 * prodcons: producer -> consumer hand-off of messages through a bounded queue.
 *
 *   prodcons PRODUCERS CONSUMERS MESSAGES QUEUE HOLD [SEED]
 *
 * Each of PRODUCERS threads allocates MESSAGES messages and pushes them through one
 * bounded queue (QUEUE entries, a mutex and two condition variables) to CONSUMERS
 * threads. Sizes are mixed: about 98.4 % are 16 B - 64 KiB, spread evenly over the powers
 * of two (so most are small), and 1/64 are 256 KiB - 1 MiB. A producer writes the header,
 * the first bytes and one byte per 4 KiB page; a consumer reads them back and keeps the
 * message until it has taken HOLD more (a consumer's processing latency), then frees it.
 * Every block is thus allocated in one thread and freed in another.
 *
 * The checksum line sums a hash of every consumed message's tag and contents: the same
 * for every correct allocator whatever the interleaving.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "prodcons"
#include "common.h"

#define HEAD_BYTES 64

typedef struct {
	void **ring;
	size_t cap, head, count;
	pthread_mutex_t lock;
	pthread_cond_t not_full, not_empty;
} queue_t;

typedef struct {
	size_t index;
	uint64_t rng;
	uint64_t sum, count, bytes, errors;
	pthread_t thread;
} actor_t;

static size_t g_messages, g_hold;
static queue_t g_queue;

static size_t size_of_tag(uint64_t tag) {
	if ((tag & 63) == 0) /* 1 in 64: large, 256 KiB - 1 MiB */
		return (256u << 10) + (size_t)((tag >> 8) % (768u << 10));
	unsigned shift = 4 + (unsigned)((tag >> 8) % 12); /* 16 B .. 32 KiB */
	size_t base = (size_t)1 << shift;
	return base + (size_t)((tag >> 16) % base); /* up to 64 KiB - 1 */
}

static void queue_push(queue_t *q, void *msg) {
	pthread_mutex_lock(&q->lock);
	while (q->count == q->cap)
		pthread_cond_wait(&q->not_full, &q->lock);
	q->ring[(q->head + q->count) % q->cap] = msg;
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
}

static void *queue_pop(queue_t *q) {
	pthread_mutex_lock(&q->lock);
	while (q->count == 0)
		pthread_cond_wait(&q->not_empty, &q->lock);
	void *msg = q->ring[q->head];
	q->head = (q->head + 1) % q->cap;
	q->count--;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->lock);
	return msg;
}

static void *producer_main(void *arg) {
	actor_t *a = arg;
	for (size_t m = 0; m < g_messages; m++) {
		uint64_t tag = rng_next(&a->rng);
		size_t size = size_of_tag(tag);
		unsigned char *p = malloc(size);
		if (!p) {
			fprintf(stderr, "prodcons: malloc(%zu) failed\n", size);
			exit(3);
		}
		memcpy(p, &tag, sizeof tag);
		size_t head = size - 1 < HEAD_BYTES ? size - 1 : HEAD_BYTES;
		for (size_t i = sizeof tag; i < head; i++)
			p[i] = (unsigned char)(tag >> (i % 8 * 8)) ^ (unsigned char)i;
		for (size_t off = 4096; off + 1 < size; off += 4096)
			p[off] = (unsigned char)(off >> 12) ^ (unsigned char)tag;
		p[size - 1] = (unsigned char)(tag >> 24) ^ 0x3c;
		a->count++;
		a->bytes += size;
		queue_push(&g_queue, p);
	}
	return NULL;
}

/* Reads the message back; returns its hash, counts an error if it is not as written. */
static uint64_t consume(actor_t *a, const unsigned char *p) {
	uint64_t tag;
	memcpy(&tag, p, sizeof tag);
	size_t size = size_of_tag(tag);
	uint64_t h = mix(tag);
	int bad = 0;
	size_t head = size - 1 < HEAD_BYTES ? size - 1 : HEAD_BYTES;
	for (size_t i = sizeof tag; i < head; i++) {
		bad |= p[i] != ((unsigned char)(tag >> (i % 8 * 8)) ^ (unsigned char)i);
		h = h * 31 + p[i];
	}
	for (size_t off = 4096; off + 1 < size; off += 4096) {
		bad |= p[off] != ((unsigned char)(off >> 12) ^ (unsigned char)tag);
		h = h * 31 + p[off];
	}
	bad |= p[size - 1] != ((unsigned char)(tag >> 24) ^ 0x3c);
	a->errors += bad;
	a->bytes += size;
	return mix(h ^ size);
}

static void *consumer_main(void *arg) {
	actor_t *a = arg;
	void **held = calloc(g_hold ? g_hold : 1, sizeof(void *));
	size_t next = 0;
	if (!held) {
		fprintf(stderr, "prodcons: calloc failed\n");
		exit(3);
	}
	for (;;) {
		unsigned char *p = queue_pop(&g_queue);
		if (!p)
			break;
		a->sum += consume(a, p);
		a->count++;
		if (g_hold == 0) {
			free(p);
			continue;
		}
		free(held[next]);
		held[next] = p;
		next = (next + 1) % g_hold;
	}
	for (size_t i = 0; i < g_hold; i++)
		free(held[i]);
	free(held);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 6 || argc > 7) {
		fprintf(stderr, "usage: prodcons PRODUCERS CONSUMERS MESSAGES QUEUE HOLD [SEED]\n");
		return 2;
	}
	size_t producers = arg_size(argv[1], "PRODUCERS");
	size_t consumers = arg_size(argv[2], "CONSUMERS");
	g_messages = arg_size(argv[3], "MESSAGES");
	size_t cap = arg_size(argv[4], "QUEUE");
	g_hold = arg_size(argv[5], "HOLD");
	uint64_t seed = argc > 6 ? arg_size(argv[6], "SEED") : 7;
	if (producers < 1 || producers > 256 || consumers < 1 || consumers > 256 || cap < 1) {
		fprintf(stderr, "prodcons: need 1<=PRODUCERS<=256, 1<=CONSUMERS<=256, QUEUE>=1\n");
		return 2;
	}
	g_queue.ring = calloc(cap, sizeof(void *));
	g_queue.cap = cap;
	pthread_mutex_init(&g_queue.lock, NULL);
	pthread_cond_init(&g_queue.not_full, NULL);
	pthread_cond_init(&g_queue.not_empty, NULL);
	actor_t *prod = calloc(producers, sizeof(actor_t));
	actor_t *cons = calloc(consumers, sizeof(actor_t));
	if (!g_queue.ring || !prod || !cons) {
		fprintf(stderr, "prodcons: out of memory\n");
		return 3;
	}
	for (size_t i = 0; i < consumers; i++) {
		cons[i].index = i;
		if (pthread_create(&cons[i].thread, NULL, consumer_main, &cons[i]) != 0) {
			fprintf(stderr, "prodcons: pthread_create failed\n");
			return 3;
		}
	}
	for (size_t i = 0; i < producers; i++) {
		prod[i].index = i;
		prod[i].rng = seed * 0x100000001b3ULL + i;
		if (pthread_create(&prod[i].thread, NULL, producer_main, &prod[i]) != 0) {
			fprintf(stderr, "prodcons: pthread_create failed\n");
			return 3;
		}
	}
	uint64_t produced = 0, produced_bytes = 0;
	for (size_t i = 0; i < producers; i++) {
		pthread_join(prod[i].thread, NULL);
		produced += prod[i].count;
		produced_bytes += prod[i].bytes;
	}
	for (size_t i = 0; i < consumers; i++)
		queue_push(&g_queue, NULL); /* one end marker per consumer */
	uint64_t sum = 0, consumed = 0, consumed_bytes = 0, errors = 0;
	for (size_t i = 0; i < consumers; i++) {
		pthread_join(cons[i].thread, NULL);
		sum += cons[i].sum;
		consumed += cons[i].count;
		consumed_bytes += cons[i].bytes;
		errors += cons[i].errors;
	}
	if (consumed != produced || consumed_bytes != produced_bytes)
		errors++;
	printf("prodcons producers=%zu consumers=%zu messages=%zu queue=%zu hold=%zu\n", producers,
	       consumers, g_messages, cap, g_hold);
	printf("checksum %016llx messages %llu bytes %llu errors %llu\n", (unsigned long long)sum,
	       (unsigned long long)consumed, (unsigned long long)consumed_bytes,
	       (unsigned long long)errors);
	free(g_queue.ring);
	free(prod);
	free(cons);
	return errors ? 1 : 0;
}
