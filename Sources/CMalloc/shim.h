#ifndef CMALLOC_SHIM_H
#define CMALLOC_SHIM_H

// glibc's allocator controls, which Swift's Glibc module leaves out: the node calls malloc_trim after a
// flood of slow clients so that freed memory goes back to the system.
#if __has_include(<malloc.h>)
#include <malloc.h>
#endif

#endif
