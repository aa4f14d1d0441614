/*
 * Helpers for the wire suites: a counting (and on demand failing) allocator,
 * a driver that feeds a byte stream to wire_decode whole, a byte at a time or
 * in seeded random chunks and checks the decoder's contract on every call,
 * frames built by hand with an independently computed checksum, and one
 * dispatcher to the body decoders with an assertion on code and reason.
 */
#ifndef WT_H
#define WT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <criterion/criterion.h>

#include "wire/msg.h"
#include "wire/wire.h"

/* ---- allocator ----------------------------------------------------------- */

typedef struct wt_alloc_stats {
    size_t calls;     /* malloc and realloc calls */
    size_t max_size;  /* the largest size asked for */
    long fail_from;   /* calls numbered >= this fail (counting from 0); -1 never */
    size_t failed;    /* calls refused */
} wt_alloc_stats_t;

extern wt_alloc_stats_t wt_alloc;

/* Install the counting allocator with fresh counters and no failures. */
void wt_alloc_install(void);
/* Fresh counters; failures from call n on (-1: none). */
void wt_alloc_reset(long fail_from);
void wt_alloc_uninstall(void);

/* ---- feeding the decoder --------------------------------------------------- */

typedef enum { WT_WHOLE, WT_BYTES, WT_RANDOM } wt_feed_t;

#define WT_MAX_FRAMES 64

typedef struct wt_frame {
    uint16_t type;
    uint32_t len;
    uint8_t *body; /* a copy (tm_malloc'd) */
    const uint8_t *dec_body; /* d->body when the frame came out, to check reuse */
    size_t end;              /* stream offset just past the frame */
} wt_frame_t;

typedef struct wt_run {
    wt_frame_t f[WT_MAX_FRAMES];
    size_t n;
    wire_status_t last; /* of the last call */
    int err;
    char reason[128];
    size_t consumed; /* bytes taken by the decoder in all */
    size_t calls;
} wt_run_t;

/*
 * Feed buf to a fresh decoder until it is used up or the decoder goes bad,
 * asserting on each call: NEED_MORE takes the whole chunk, at most one frame
 * per call, a frame ends exactly where the frame's bytes end (the caller's
 * expected frame boundaries are checked by the tests), bad stays bad.
 */
void wt_decode_all(const uint8_t *buf, size_t len, wt_feed_t how, uint64_t seed, wt_run_t *out);
void wt_run_free(wt_run_t *r);
const char *wt_feed_name(wt_feed_t how);

/*
 * The one frame of type in b (from offset 0) goes through the decoder fed
 * whole, a byte at a time and in random chunks (several seeds); each time it
 * must come out alone, with the same body, and check(body, len, arg) runs on
 * the decoder's copy.
 */
typedef void (*wt_check_fn)(const uint8_t *body, size_t len, void *arg);
void wt_roundtrip(const wire_buf_t *b, uint16_t type, wt_check_fn check, void *arg);

/* ---- frames by hand -------------------------------------------------------- */

/* XXH3 of header bytes 0..7 and the body, computed here, not by wire/. */
uint64_t wt_checksum(const uint8_t *hdr8, const uint8_t *body, size_t len);
/* Append a frame with these header fields and body; checksum computed. */
void wt_frame_raw(wire_buf_t *b, uint16_t type, uint16_t flags, const void *body, size_t len);
/* Recompute the checksum of the frame at p (its body_len bytes must follow). */
void wt_reseal(uint8_t *p);

/* ---- bodies ------------------------------------------------------------------ */

/* Decode body as a frame of type with the matching wire_dec_*; returns its
 * code, reason in reason. Records use a scratch buffer of WIRE_MAX_BATCH_DATA. */
int wt_dec_any(uint16_t type, const uint8_t *body, size_t len, char *reason, size_t rlen);
/* The records the last wt_dec_any(WIRE_T_RECORDS) decoded, and its scratch. */
extern wire_records_t *wt_records;
extern uint8_t *wt_scratch;

/* Assert that decoding body as type fails with want and a non-empty reason
 * containing `has` (NULL: any). */
#define wt_expect(type, body, len, want, has)                                                                  \
    do {                                                                                                       \
        char wt__r[256] = "";                                                                                  \
        int wt__rc = wt_dec_any((type), (body), (len), wt__r, sizeof wt__r);                                   \
        cr_assert_eq(wt__rc, (want), "%s:%d: code %d (%s), want %d (%s); reason \"%s\"", __FILE__, __LINE__,  \
                     wt__rc, wire_err_name(wt__rc), (want), wire_err_name(want), wt__r);                       \
        if ((want) != 0) {                                                                                     \
            cr_assert(wt__r[0] != '\0', "%s:%d: error %d without a reason", __FILE__, __LINE__, wt__rc);       \
            const char *wt__has = (has);                                                                       \
            if (wt__has)                                                                                       \
                cr_assert(strstr(wt__r, wt__has) != NULL, "%s:%d: reason \"%s\" does not mention \"%s\"",    \
                          __FILE__, __LINE__, wt__r, wt__has);                                                 \
        }                                                                                                      \
    } while (0)

/* The body of the one frame in b (which starts at offset 0). */
static inline const uint8_t *wt_body(const wire_buf_t *b)
{
    return b->data + WIRE_HDR_LEN;
}
static inline size_t wt_body_len(const wire_buf_t *b)
{
    return b->len - WIRE_HDR_LEN;
}

/* A seed for randomized tests: TIDEMARK_WIRE_SEED or a fixed default. */
uint64_t wt_seed(void);

#endif
