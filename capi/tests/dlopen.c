/* librpmalloc.so opened with dlopen after start-up instead of preloaded. Its per-thread
 * slot is initial-exec TLS (the library is marked STATIC_TLS), so the loader must find
 * static TLS space for it in every thread, also in one that was already running when the
 * library was opened, and initialise it there. The program calls rpmalloc's own names
 * (the library is opened RTLD_LOCAL, so it does not replace this program's malloc): a
 * thread started before the dlopen, one started after and the main thread each allocate
 * and fill blocks, free half of them, and leave the rest to the main thread, which checks
 * and frees them after the threads exited.
 *
 * usage: dlopen PATH-TO-librpmalloc.so; prints "all checks passed" */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *(*alloc_fn)(size_t);
typedef void (*free_fn)(void *);
static alloc_fn rp_alloc;
static free_fn rp_free;

#define BLOCKS 3000

struct work {
    unsigned seed;
    void *block[BLOCKS];
    size_t size[BLOCKS];
};

static void fail(const char *what) {
    fprintf(stderr, "FAILED: %s\n", what);
    exit(1);
}

static unsigned char byte_of(unsigned seed, size_t i) {
    return (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

/* Allocates and fills every block of `w`: small, medium, large and a few huge sizes. */
static void allocate(struct work *w) {
    for (size_t i = 0; i < BLOCKS; i++) {
        size_t size = 1 + (i * 97u + w->seed) % 4000;
        if (i % 100 == 7) size *= 60;  /* up to 240 KB: large blocks */
        if (i % 1000 == 11) size = 3u << 20;  /* huge blocks */
        unsigned char *p = rp_alloc(size);
        if (!p) fail("rpmalloc returned null");
        if ((size_t)p % 16) fail("block not 16-byte aligned");
        for (size_t j = 0; j < size; j++) p[j] = byte_of(w->seed + (unsigned)i, j);
        w->block[i] = p;
        w->size[i] = size;
    }
}

/* Checks and frees the blocks of `w` from `from` on, stepping by `step`. */
static void check_and_free(struct work *w, size_t from, size_t step) {
    for (size_t i = from; i < BLOCKS; i += step) {
        unsigned char *p = w->block[i];
        for (size_t j = 0; j < w->size[i]; j++)
            if (p[j] != byte_of(w->seed + (unsigned)i, j)) fail("block contents changed");
        rp_free(p);
    }
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t opened_cond = PTHREAD_COND_INITIALIZER;
static int opened;

/* A thread: waits until the library is open (for the thread started before), allocates,
 * frees the even blocks itself and leaves the odd ones. */
static void *worker(void *arg) {
    struct work *w = arg;
    pthread_mutex_lock(&lock);
    while (!opened) pthread_cond_wait(&opened_cond, &lock);
    pthread_mutex_unlock(&lock);
    allocate(w);
    check_and_free(w, 0, 2);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: dlopen PATH-TO-librpmalloc.so");
    static struct work early = {.seed = 1}, late = {.seed = 2}, own = {.seed = 3};
    pthread_t early_thread, late_thread;
    if (pthread_create(&early_thread, NULL, worker, &early)) fail("pthread_create");

    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        fail("dlopen");
    }
    rp_alloc = (alloc_fn)dlsym(lib, "rpmalloc");
    rp_free = (free_fn)dlsym(lib, "rpfree");
    if (!rp_alloc || !rp_free) fail("dlsym rpmalloc/rpfree");

    pthread_mutex_lock(&lock);
    opened = 1;
    pthread_cond_broadcast(&opened_cond);
    pthread_mutex_unlock(&lock);
    if (pthread_create(&late_thread, NULL, worker, &late)) fail("pthread_create");
    allocate(&own);
    if (pthread_join(early_thread, NULL) || pthread_join(late_thread, NULL)) fail("join");

    /* The threads have exited: their odd blocks are freed here, by another thread. */
    check_and_free(&early, 1, 2);
    check_and_free(&late, 1, 2);
    check_and_free(&own, 0, 1);
    printf("all checks passed\n");
    return 0;
}
