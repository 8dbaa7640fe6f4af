#include "CMemory.h"
// Any C library header defines __GLIBC__ under glibc; CMemory.h includes only <stddef.h>, which is the compiler's and
// does not. Without this include the fallbacks below were compiled and malloc_trim was never called.
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
int tollgate_heap_shim_is_glibc(void) { return 1; }
int tollgate_malloc_trim(size_t pad) { return malloc_trim(pad); }
void tollgate_heap_bytes(size_t *in_use, size_t *kept_free) {
    struct mallinfo2 info = mallinfo2();
    *in_use = info.uordblks + info.hblkhd;
    *kept_free = info.fordblks;
}
#else
int tollgate_heap_shim_is_glibc(void) { return 0; }
int tollgate_malloc_trim(size_t pad) { (void)pad; return 0; }
void tollgate_heap_bytes(size_t *in_use, size_t *kept_free) { *in_use = 0; *kept_free = 0; }
#endif
