#ifndef TOLLGATE_CMEMORY_H
#define TOLLGATE_CMEMORY_H
#include <stddef.h>
// glibc's malloc_trim, which Swift's Glibc module does not export: gives freed heap memory back to the kernel.
// Returns 1 when memory was released, 0 otherwise (and 0 on a C library without it).
int tollgate_malloc_trim(size_t pad);
// glibc's mallinfo2: bytes of heap in use and bytes free but kept by the allocator (both 0 without it). Walks the
// arenas' bins: for statistics and diagnostics, not for the request path.
void tollgate_heap_bytes(size_t *in_use, size_t *kept_free);
// 1 when the shim was compiled against glibc's allocator (malloc_trim and mallinfo2 are real), 0 for the fallbacks.
int tollgate_heap_shim_is_glibc(void);
#endif
