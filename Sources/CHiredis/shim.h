#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

// hiredis 0.14 exposes the reader's error text only through a struct field; this helper keeps the Swift
// side off the struct layout.

/// The reader's error text (NUL-terminated, owned by the reader).
static inline const char *CHiredis_readerErrorString(const redisReader *reader) {
    return reader->errstr;
}

#endif
