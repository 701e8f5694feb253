/* The C ABI under test: every exported function with glibc's semantics, alignment edge
 * cases, errno values, threads freeing each other's blocks, thread exit, fork with and
 * without exec. Run with LD_PRELOAD=librpmalloc.so, or linked with librpmalloc.a.
 * Exits 0 when every check passed; prints each failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/rpmalloc.h"

/* Weak, so the program also runs under LD_PRELOAD without linking the library: the
 * dynamic loader binds them to the preloaded one (main checks it did). */
#pragma weak rpmalloc_initialize
#pragma weak rpmalloc_thread_initialize
#pragma weak rpmalloc_thread_finalize
#pragma weak rpmalloc
#pragma weak rpfree
#pragma weak rpcalloc
#pragma weak rprealloc
#pragma weak rpaligned_alloc
#pragma weak rpmalloc_usable_size
#pragma weak rpmalloc_heap_acquire
#pragma weak rpmalloc_heap_release
#pragma weak rpmalloc_heap_free_all
#pragma weak rpmalloc_heap_alloc
#pragma weak rpmalloc_heap_aligned_alloc
#pragma weak rpmalloc_heap_calloc
#pragma weak rpmalloc_heap_aligned_calloc
#pragma weak rpmalloc_heap_realloc
#pragma weak rpmalloc_heap_aligned_realloc
#pragma weak rpmalloc_heap_free

static int failures;
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* Whether `p` is the rpmalloc port's: its own query answers for it. */
static int ours(void *p) { return rpmalloc_usable_size(p) >= 1; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + seed);
}
static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31 + seed)) return 0;
    return 1;
}

static void test_malloc_free(void) {
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 1024, 4096, 32000, 65536, 100000,
                                   1 << 20, 3 << 20, 40 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 15) == 0);
        CHECK(ours(p));
        CHECK(malloc_usable_size(p) >= n);
        fill(p, n, (unsigned)k);
        CHECK(filled(p, n, (unsigned)k));
        free(p);
    }
    /* malloc(0): distinct blocks. */
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);
    free(a);
    free(b);
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void) {
    for (size_t n = 1; n <= (8 << 20); n *= 7) {
        /* Dirty a block of that size first, so calloc must clear reused memory. */
        unsigned char *d = malloc(n);
        memset(d, 0xAB, n);
        free(d);
        unsigned char *p = calloc(n, 1);
        CHECK(p != NULL);
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++) nonzero += p[i] != 0;
        CHECK(nonzero == 0);
        free(p);
    }
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL);
    CHECK(errno == ENOMEM);
    void *z = calloc(0, 10);
    CHECK(z != NULL);
    free(z);
}

static void test_realloc(void) {
    /* Growing from 1 byte to 16 MiB and back, contents kept. */
    unsigned char *p = NULL;
    size_t n = 0;
    for (size_t next = 1; next <= (16 << 20); next = next * 3 + 1) {
        p = realloc(p, next);
        CHECK(p != NULL);
        if (n) CHECK(filled(p, n, 7));
        fill(p, next, 7);
        n = next;
    }
    for (size_t next = n / 5; next >= 1; next /= 5) {
        p = realloc(p, next);
        CHECK(p != NULL);
        CHECK(filled(p, next, 7));
    }
    /* realloc(p, 0) frees and returns NULL (glibc); realloc(NULL, n) is malloc. */
    CHECK(realloc(p, 0) == NULL);
    p = realloc(NULL, 100);
    CHECK(p != NULL && ours(p));
    /* Failure: NULL, ENOMEM, the block untouched. */
    fill(p, 100, 3);
    errno = 0;
    CHECK(realloc(p, SIZE_MAX - 4096) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(filled(p, 100, 3));
    /* reallocarray: overflow is ENOMEM and leaves the block. */
    errno = 0;
    CHECK(reallocarray(p, SIZE_MAX / 2, 4) == NULL);
    CHECK(errno == ENOMEM);
    p = reallocarray(p, 50, 4);
    CHECK(p != NULL && filled(p, 100, 3));
    free(p);
}

static void test_aligned(void) {
    for (size_t align = 1; align <= (4 << 20); align *= 2) {
        static const size_t sizes[] = {1, 24, 1000, 70000, 3 << 20};
        for (size_t k = 0; k < 5; k++) {
            size_t n = sizes[k];
            void *p = aligned_alloc(align, n);
            CHECK(p != NULL && ((uintptr_t)p % align) == 0);
            memset(p, 0x11, n);
            CHECK(malloc_usable_size(p) >= n);
            free(p);

            p = memalign(align, n);
            CHECK(p != NULL && ((uintptr_t)p % align) == 0);
            free(p);

            if (align >= sizeof(void *)) {
                void *q = (void *)1;
                CHECK(posix_memalign(&q, align, n) == 0);
                CHECK(q != NULL && ((uintptr_t)q % align) == 0);
                /* realloc of an aligned block keeps the contents. */
                memset(q, 0x22, n);
                q = realloc(q, n * 2 + 5);
                CHECK(q != NULL && ((unsigned char *)q)[n - 1] == 0x22);
                free(q);
            }
        }
    }
    void *q = (void *)1;
    errno = 0;
    CHECK(posix_memalign(&q, 3, 10) == EINVAL);
    CHECK(posix_memalign(&q, sizeof(void *) / 2, 10) == EINVAL);
    CHECK(q == (void *)1);
    CHECK(posix_memalign(&q, 64, SIZE_MAX - 100) == ENOMEM);
    CHECK(q == (void *)1);
    CHECK(errno == 0); /* posix_memalign reports through its result */
    errno = 0;
    CHECK(aligned_alloc(48, 10) == NULL);
    CHECK(errno == EINVAL);
    /* memalign rounds a non-power-of-two alignment up, as glibc. */
    void *m = memalign(48, 10);
    CHECK(m != NULL && ((uintptr_t)m % 64) == 0);
    free(m);

    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v != NULL && ((uintptr_t)v % page) == 0);
    free(v);
    void *pv = pvalloc(page + 1);
    CHECK(pv != NULL && ((uintptr_t)pv % page) == 0);
    CHECK(malloc_usable_size(pv) >= (size_t)(2 * page));
    free(pv);
    errno = 0;
    CHECK(malloc(SIZE_MAX - 1) == NULL);
    CHECK(errno == ENOMEM);
}

static void test_rp_names(void) {
    CHECK(rpmalloc_initialize() == 0);
    rpmalloc_thread_initialize();
    void *p = rpmalloc(100);
    CHECK(p != NULL && rpmalloc_usable_size(p) >= 100);
    p = rprealloc(p, 5000);
    CHECK(p != NULL && rpmalloc_usable_size(p) >= 5000);
    rpfree(p);
    unsigned char *c = rpcalloc(10, 10);
    CHECK(c != NULL && c[99] == 0);
    rpfree(c);
    void *a = rpaligned_alloc(4096, 10);
    CHECK(a != NULL && ((uintptr_t)a % 4096) == 0);
    rpfree(a);
    CHECK(malloc_trim(0) == 1);
}

/* First-class heaps: blocks of every kind, resized in place and moved, freed one by one,
 * by rpfree on another thread, and all at once by free_all and release. */
static void *free_elsewhere(void *arg) {
    void **blocks = arg;
    for (int i = 0; i < 64; i++) rpfree(blocks[i]);
    return NULL;
}

static void test_heaps(void) {
    for (int round = 0; round < 20; round++) {
        rpmalloc_heap_t *heap = rpmalloc_heap_acquire();
        CHECK(heap != NULL);
        static const size_t sizes[] = {8, 700, 20000, 300000, 5 << 20};
        void *kept[200];
        for (int i = 0; i < 200; i++) {
            size_t n = sizes[i % 5];
            unsigned char *p = (i % 3 == 0) ? rpmalloc_heap_aligned_alloc(heap, 4096, n)
                                            : rpmalloc_heap_alloc(heap, n);
            CHECK(p != NULL && ours(p));
            if (i % 3 == 0) CHECK(((uintptr_t)p % 4096) == 0);
            fill(p, n < 256 ? n : 256, (unsigned)i);
            kept[i] = p;
        }
        for (int i = 0; i < 200; i += 7) {
            size_t n = sizes[i % 5];
            unsigned char *q = rpmalloc_heap_realloc(heap, kept[i], n * 2 + 1, 0);
            CHECK(q != NULL && filled(q, n < 256 ? n : 256, (unsigned)i));
            kept[i] = q;
            /* Grow-or-fail: never moves. */
            void *same = rpmalloc_heap_realloc(heap, q, 64 << 20, RPMALLOC_GROW_OR_FAIL);
            CHECK(same == NULL);
        }
        unsigned char *z = rpmalloc_heap_calloc(heap, 1000, 10);
        CHECK(z != NULL && z[0] == 0 && z[9999] == 0);
        rpmalloc_heap_free(heap, z);
        errno = 0;
        CHECK(rpmalloc_heap_calloc(heap, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
        for (int i = 1; i < 200; i += 5) {
            rpmalloc_heap_free(heap, kept[i]);
            kept[i] = NULL;
        }
        /* Blocks freed on another thread go back to the heap. */
        void *away[64];
        for (int i = 0; i < 64; i++) away[i] = rpmalloc_heap_alloc(heap, (size_t)(i * 1000 + 8));
        pthread_t th;
        pthread_create(&th, NULL, free_elsewhere, away);
        pthread_join(th, NULL);
        if (round % 2) {
            rpmalloc_heap_free_all(heap);
            void *again = rpmalloc_heap_alloc(heap, 100);
            CHECK(again != NULL);
        }
        rpmalloc_heap_release(heap); /* frees what is still in it */
    }
    rpmalloc_heap_release(NULL);
}

/* A block another allocator made (here: a page mapped by hand) is left alone by free and
 * answers 0 to malloc_usable_size, instead of corrupting anything. */
static void test_foreign(void) {
    static char stack_block[64];
    free(stack_block);
    CHECK(malloc_usable_size(stack_block) == 0);
    void *p = malloc(32);
    free(p);
}

/* Threads: each allocates blocks that the next thread frees. */
#define THREADS 8
#define BLOCKS 20000
static void *slots[THREADS][BLOCKS];
static pthread_barrier_t barrier;

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < BLOCKS; i++) {
            size_t n = (size_t)((i * 2654435761u + t) % 5000) + 1;
            if (i % 500 == 0) n = 100000 + (size_t)i;
            unsigned char *p = malloc(n);
            fill(p, n < 64 ? n : 64, (unsigned)(t + i));
            slots[t][i] = p;
        }
        pthread_barrier_wait(&barrier);
        int from = (t + 1) % THREADS;
        for (int i = 0; i < BLOCKS; i++) {
            size_t n = (size_t)((i * 2654435761u + from) % 5000) + 1;
            if (i % 500 == 0) n = 100000 + (size_t)i;
            if (!filled(slots[from][i], n < 64 ? n : 64, (unsigned)(from + i))) failures++;
            free(slots[from][i]);
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static void test_threads(void) {
    pthread_t th[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&barrier);
}

/* Thread exit: short-lived threads that leave blocks behind for the main thread to free,
 * and one that gives its heap back early with rpmalloc_thread_finalize. */
static void *short_lived(void *arg) {
    void **out = arg;
    for (int i = 0; i < 100; i++) out[i] = malloc((size_t)(i * 97 + 1));
    if ((uintptr_t)out & 8) {
        rpmalloc_thread_finalize(1);
        void *again = malloc(10); /* the thread is set up again */
        free(again);
    }
    return NULL;
}

static void test_thread_exit(void) {
    for (int wave = 0; wave < 200; wave++) {
        void *blocks[4][100];
        pthread_t th[4];
        for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, short_lived, blocks[t]);
        for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < 100; i++) {
                CHECK(ours(blocks[t][i]));
                free(blocks[t][i]);
            }
    }
}

/* fork from a multi-threaded program: the child allocates without and with exec. */
static volatile int stop_churn;
static void *churn(void *arg) {
    (void)arg;
    while (!stop_churn) {
        void *p[64];
        for (int i = 0; i < 64; i++) p[i] = malloc((size_t)(i * 1000 + 16));
        for (int i = 0; i < 64; i++) free(p[i]);
    }
    return NULL;
}

static void test_fork(const char *self) {
    pthread_t th[2];
    stop_churn = 0;
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, churn, NULL);
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10);
            void *p[100];
            for (int k = 0; k < 100; k++) p[k] = malloc((size_t)(k * 5000 + 1));
            for (int k = 0; k < 100; k++) free(p[k]);
            if (i % 5 == 0) {
                /* fork + exec: the new image runs this program's child mode. */
                execl(self, self, "--child", (char *)NULL);
                _exit(3);
            }
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    stop_churn = 1;
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
}

int main(int argc, char **argv) {
    if (!rpmalloc_usable_size) {
        fprintf(stderr, "c_api: not running on librpmalloc (preload or link it)\n");
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        void *p = malloc(1000);
        int ok = p != NULL && ours(p);
        free(p);
        return ok ? 0 : 1;
    }
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_aligned();
    test_rp_names();
    test_foreign();
    test_heaps();
    test_threads();
    test_thread_exit();
    test_fork(argv[0]);
    if (failures) {
        fprintf(stderr, "c_api: %d checks failed\n", failures);
        return 1;
    }
    printf("c_api: all checks passed\n");
    return 0;
}
