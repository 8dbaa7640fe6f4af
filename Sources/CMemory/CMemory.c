#include "CMemory.h"
#if defined(__GLIBC__)
#include <malloc.h>
int tollgate_malloc_trim(size_t pad) { return malloc_trim(pad); }
#else
int tollgate_malloc_trim(size_t pad) { (void)pad; return 0; }
#endif
