/* rpmalloc's own names, exported by librpmalloc.so / librpmalloc.a (the Rust port's
 * C ABI, capi/). The standard functions (malloc, free, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size,
 * malloc_trim) and the C++ operator new/delete family are exported under their usual
 * names and declared by the system headers.
 *
 * Kept in step with the library by capi/check-header (run by capi/tests/programs.rs): every
 * function declared here is exported, and every exported rp* name is declared here. */
#ifndef RPMALLOC_H
#define RPMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nothing to do: the allocator is ready from the start. Returns 0. */
int rpmalloc_initialize(void);
/* Gives cached memory back to the OS. */
void rpmalloc_finalize(void);
/* Nothing to do: a thread is set up on first use. */
void rpmalloc_thread_initialize(void);
/* Gives the calling thread's heap back now, as its exit would (its caches go to the
 * global cache whatever release_caches says); the thread is set up again if it
 * allocates later. */
void rpmalloc_thread_finalize(int release_caches);

/* As malloc, free, calloc, realloc, aligned_alloc and malloc_usable_size. */
void *rpmalloc(size_t size);
void rpfree(void *ptr);
void *rpcalloc(size_t num, size_t size);
void *rprealloc(void *ptr, size_t size);
void *rpaligned_alloc(size_t alignment, size_t size);
size_t rpmalloc_usable_size(void *ptr);

/* First-class heaps. A heap is used by one thread at a time (no function of a heap is
 * thread-safe); its blocks may be freed with rpfree/free from any thread. */
typedef struct rpmalloc_heap_t rpmalloc_heap_t;

/* rpmalloc_heap_realloc flag: return NULL rather than move the block. */
#define RPMALLOC_GROW_OR_FAIL 2

/* A new heap (NULL with errno ENOMEM when refused). */
rpmalloc_heap_t *rpmalloc_heap_acquire(void);
/* Releases the heap. Unlike C rpmalloc's, this also frees every block still in it
 * (C rpmalloc asks for rpmalloc_heap_free_all first). NULL is a no-op. */
void rpmalloc_heap_release(rpmalloc_heap_t *heap);
/* Frees every block of the heap at once; the heap stays usable. */
void rpmalloc_heap_free_all(rpmalloc_heap_t *heap);
void *rpmalloc_heap_alloc(rpmalloc_heap_t *heap, size_t size);
void *rpmalloc_heap_aligned_alloc(rpmalloc_heap_t *heap, size_t alignment, size_t size);
void *rpmalloc_heap_calloc(rpmalloc_heap_t *heap, size_t num, size_t size);
void *rpmalloc_heap_aligned_calloc(rpmalloc_heap_t *heap, size_t alignment, size_t num,
                                   size_t size);
/* ptr: NULL or a block of this heap; flags: 0 or RPMALLOC_GROW_OR_FAIL. */
void *rpmalloc_heap_realloc(rpmalloc_heap_t *heap, void *ptr, size_t size, unsigned int flags);
void *rpmalloc_heap_aligned_realloc(rpmalloc_heap_t *heap, void *ptr, size_t alignment,
                                    size_t size, unsigned int flags);
void rpmalloc_heap_free(rpmalloc_heap_t *heap, void *ptr);

#ifdef __cplusplus
}
#endif

#endif
