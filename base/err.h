/*
 * Error codes shared by every Tidemark module.
 *
 * Convention (after libuv): functions return 0 on success or a negative code.
 * System failures are -errno, converted where the call failed. Tidemark's own
 * conditions live in a reserved range below TM_E__BASE so they never collide
 * with an errno value, and tm_strerror() names both kinds.
 */
#ifndef TM_ERR_H
#define TM_ERR_H

#define TM_E__BASE (-4000)

enum {
    TM_ECORRUPT  = TM_E__BASE - 1, /* checksummed data does not verify */
    TM_EVERSION  = TM_E__BASE - 2, /* a format version this build cannot read */
    TM_ETOOBIG   = TM_E__BASE - 3, /* a record or request over its named limit */
    TM_ECLOSED   = TM_E__BASE - 4, /* the object was closed */
    TM_EFOREIGN  = TM_E__BASE - 5, /* a file that belongs to another journal */
    TM_ERETIRED  = TM_E__BASE - 6, /* the position was retired */
    TM_EFAILED   = TM_E__BASE - 7, /* refused: an earlier I/O failure is not cleared */
    TM_EINVAL    = TM_E__BASE - 8, /* an argument outside its allowed range */
    TM_ENOTFOUND = TM_E__BASE - 9, /* no such record or position */
    TM_ENOPOINT  = TM_E__BASE - 10, /* a valid point selector that names no point */
    TM_E__LAST   = TM_E__BASE - 11,
};

/* A short, stable text for any code: Tidemark's own or a negative errno. */
const char *tm_strerror(int code);

/* The stable symbolic name ("TM_ECORRUPT", "EIO", ...), for logs and JSON. */
const char *tm_errname(int code);

#endif
