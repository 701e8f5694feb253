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
/* Gives the calling thread's heap back now, as its exit would; the thread is set up
 * again if it allocates later. */
void rpmalloc_thread_finalize(void);

/* As malloc, free, calloc, realloc, aligned_alloc and malloc_usable_size. */
void *rpmalloc(size_t size);
void rpfree(void *ptr);
void *rpcalloc(size_t num, size_t size);
void *rprealloc(void *ptr, size_t size);
void *rpaligned_alloc(size_t alignment, size_t size);
size_t rpmalloc_usable_size(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
