/*
 * Fuzz target: jnl_rec_check() and jnl_rec_payload() on arbitrary bytes.
 *
 * The input is what recovery or a reader finds at one offset of a segment
 * file. It is checked twice: as given (torn, stale, foreign or random bytes)
 * and as a copy re-sealed with the salt, because a mutated record almost
 * never keeps a valid XXH3 checksum, and the checks behind the checksum
 * (fields, LSN chain, lz4 payload) would otherwise never be reached. Besides
 * "no crash, no read outside the input", every accepted record must satisfy
 * the validity rule of journal/format.h, asserted below.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "journal/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_payload(const uint8_t *rec, const jnl_rec_hdr_t *h)
{
    uint8_t *dst = NULL;
    if (h->flags & JNL_FLAG_LZ4) {
        /* raw_len was bounded by jnl_rec_check (JNL_HARD_MAX_RECORD). */
        dst = tm_malloc(h->raw_len ? h->raw_len : 1);
        if (dst == NULL)
            return;
    }
    const uint8_t *out = NULL;
    int rc = jnl_rec_payload(rec, h, dst, &out);
    if (rc == 0) {
        FUZZ_ASSERT(out != NULL);
        if (h->flags & JNL_FLAG_LZ4)
            FUZZ_ASSERT(out == dst);
        else
            FUZZ_ASSERT(out == rec + JNL_REC_HDR_LEN && h->raw_len == h->length - JNL_REC_OVERHEAD);
        /* Touch every byte handed back, so ASan checks the whole extent. */
        volatile uint8_t acc = 0;
        for (uint32_t i = 0; i < h->raw_len; i++)
            acc ^= out[i];
        (void)acc;
    } else {
        FUZZ_ASSERT(rc == TM_ECORRUPT && (h->flags & JNL_FLAG_LZ4));
    }
    tm_free(dst);
}

static jnl_rec_verdict_t check_one(const uint8_t *buf, size_t avail, uint64_t salt, uint64_t first,
                                   uint64_t expect, uint32_t max_len)
{
    jnl_rec_hdr_t h;
    jnl_rec_verdict_t v = jnl_rec_check(buf, avail, salt, first, expect, max_len, &h);
    FUZZ_ASSERT(jnl_rec_verdict_str(v) != NULL);
    if (v != JNL_REC_OK)
        return v;
    FUZZ_ASSERT(h.length >= JNL_REC_OVERHEAD && h.length <= avail);
    FUZZ_ASSERT((uint64_t)h.length - JNL_REC_OVERHEAD <= max_len);
    FUZZ_ASSERT(h.salt32 == (uint32_t)salt);
    FUZZ_ASSERT(h.type != 0 && (h.flags & ~JNL_FLAGS_KNOWN) == 0);
    FUZZ_ASSERT(expect == 0 || h.lsn == expect);
    FUZZ_ASSERT(h.lsn >= first && h.batch_back <= h.lsn - first);
    FUZZ_ASSERT(h.raw_len <= JNL_HARD_MAX_RECORD);
    /* A valid header is exactly what the encoder writes for its fields. */
    uint8_t hdr[JNL_REC_HDR_LEN];
    jnl_rec_hdr_encode(&h, hdr);
    FUZZ_ASSERT(memcmp(hdr, buf, JNL_REC_HDR_LEN) == 0);
    check_payload(buf, &h);
    return v;
}

/* The checks a checksum cannot stop: the same bytes with a valid seal. */
static void check_resealed(const uint8_t *data, size_t size, uint64_t first, uint64_t lsn)
{
    if (size < JNL_REC_OVERHEAD)
        return;
    uint32_t length = tm_get32(data);
    if (length < JNL_REC_OVERHEAD || length > size || length - JNL_REC_OVERHEAD > JNL_HARD_MAX_RECORD)
        return;
    /* Exactly `length` bytes, so ASan sees any read past the record. */
    uint8_t *rec = tm_malloc(length);
    if (rec == NULL)
        return;
    memcpy(rec, data, length);
    tm_put32(rec + 32, (uint32_t)FUZZ_SALT_A);
    jnl_rec_seal(rec, FUZZ_SALT_A);

    jnl_rec_verdict_t v = check_one(rec, length, FUZZ_SALT_A, first, 0, JNL_HARD_MAX_RECORD);
    /* Length in bounds, salt and seal right: only the fields can be wrong. */
    FUZZ_ASSERT(v == JNL_REC_OK || v == JNL_REC_BAD_FIELDS);
    v = check_one(rec, length, FUZZ_SALT_A, first, lsn ? lsn : 1, JNL_HARD_MAX_RECORD);
    FUZZ_ASSERT(v == JNL_REC_OK || v == JNL_REC_BAD_FIELDS || (v == JNL_REC_BAD_LSN && lsn == 0));
    /* The same record against a smaller limit and a wrong salt. */
    v = check_one(rec, length, FUZZ_SALT_A, first, 0, 4096);
    FUZZ_ASSERT((v == JNL_REC_BAD_LENGTH) == (length - JNL_REC_OVERHEAD > 4096));
    v = check_one(rec, length, FUZZ_SALT_B, first, 0, JNL_HARD_MAX_RECORD);
    FUZZ_ASSERT(v == JNL_REC_STALE_SALT);
    tm_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Caller-side context as recovery would derive it: the record's own LSN
     * as the expected one, its batch start as the segment's first LSN. */
    uint64_t lsn = size >= 16 ? tm_get64(data + 8) : 0;
    uint32_t back = size >= 32 ? tm_get32(data + 28) : 0;
    uint64_t first = (lsn > back) ? lsn - back : 1;

    static const uint64_t salts[] = {FUZZ_SALT_A, FUZZ_SALT_B, 0, UINT64_MAX};
    for (size_t i = 0; i < sizeof salts / sizeof salts[0]; i++)
        check_one(data, size, salts[i], 1, 0, JNL_HARD_MAX_RECORD);
    check_one(data, size, FUZZ_SALT_A, first, lsn, 1u << 20);
    check_one(data, size, FUZZ_SALT_A, first, 0, 0);
    check_one(data, size, FUZZ_SALT_A, 0, 0, UINT32_MAX);

    check_resealed(data, size, first, lsn);
    return 0;
}
