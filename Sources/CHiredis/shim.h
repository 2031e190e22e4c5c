#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

// hiredis 0.14 exposes the reader's error state only through struct fields and
// `redisReaderGetReply`'s status; these helpers keep the Swift side off the struct layout.

/// Returns non-zero when the reader hit a protocol error.
static inline int CHiredis_readerHasError(const redisReader *reader) {
    return reader->err != 0;
}

/// The reader's error text (NUL-terminated, owned by the reader).
static inline const char *CHiredis_readerErrorString(const redisReader *reader) {
    return reader->errstr;
}

#endif
