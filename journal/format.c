/* Encoding and checking of the journal format; the layout is in format.h. */
#include "format.h"

#include <lz4.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/endian.h"
#include "base/err.h"

_Static_assert(JNL_SEG_HDR_LEN == 80, "segment header layout is fixed by format version 1");
_Static_assert(JNL_REC_HDR_LEN == 40, "record header layout is fixed by format version 1");
_Static_assert(JNL_SEG_HDR_LEN <= JNL_SEG_DATA_OFF, "header must fit before the data");

void jnl_seg_hdr_encode(const jnl_seg_hdr_t *h, uint8_t out[JNL_SEG_HDR_LEN])
{
    memcpy(out, JNL_MAGIC, JNL_MAGIC_LEN);
    tm_put32(out + 8, h->version);
    tm_put32(out + 12, h->data_off);
    tm_put64(out + 16, h->segment_size);
    tm_put64(out + 24, h->seq);
    tm_put64(out + 32, h->journal_id);
    tm_put64(out + 40, h->salt);
    tm_put64(out + 48, h->first_lsn);
    tm_put64(out + 56, h->prev_end);
    tm_put64(out + 64, h->created_ns);
    tm_put64(out + 72, XXH3_64bits(out, 72));
}

jnl_hdr_verdict_t jnl_seg_hdr_decode(const uint8_t *buf, size_t len, jnl_seg_hdr_t *h)
{
    memset(h, 0, sizeof *h);
    if (len < JNL_SEG_HDR_LEN || memcmp(buf, JNL_MAGIC, JNL_MAGIC_LEN) != 0)
        return JNL_HDR_NOT_A_SEGMENT;
    h->version = tm_get32(buf + 8);
    h->data_off = tm_get32(buf + 12);
    h->segment_size = tm_get64(buf + 16);
    h->seq = tm_get64(buf + 24);
    h->journal_id = tm_get64(buf + 32);
    h->salt = tm_get64(buf + 40);
    h->first_lsn = tm_get64(buf + 48);
    h->prev_end = tm_get64(buf + 56);
    h->created_ns = tm_get64(buf + 64);
    /* The version is judged before the checksum: a later version may lay out
     * (and checksum) the rest differently, and must be refused by name. */
    if (h->version != JNL_FORMAT_VERSION)
        return JNL_HDR_BAD_VERSION;
    if (tm_get64(buf + 72) != XXH3_64bits(buf, 72))
        return JNL_HDR_BAD_CHECKSUM;
    if (h->data_off != JNL_SEG_DATA_OFF || h->segment_size < JNL_FMT_MIN_SEGMENT ||
        h->first_lsn == 0 || h->salt == 0)
        return JNL_HDR_BAD_FIELDS;
    return JNL_HDR_OK;
}

const char *jnl_hdr_verdict_str(jnl_hdr_verdict_t v)
{
    switch (v) {
    case JNL_HDR_OK: return "ok";
    case JNL_HDR_NOT_A_SEGMENT: return "no segment magic";
    case JNL_HDR_BAD_VERSION: return "unknown format version";
    case JNL_HDR_BAD_CHECKSUM: return "bad header checksum";
    case JNL_HDR_BAD_FIELDS: return "impossible header fields";
    }
    return "?";
}

const char *jnl_rec_verdict_str(jnl_rec_verdict_t v)
{
    switch (v) {
    case JNL_REC_OK: return "ok";
    case JNL_REC_ZERO_LENGTH: return "zero length";
    case JNL_REC_SHORT_HEADER: return "short header";
    case JNL_REC_BAD_LENGTH: return "bad length";
    case JNL_REC_STALE_SALT: return "stale salt";
    case JNL_REC_BAD_CHECKSUM: return "bad checksum";
    case JNL_REC_BAD_LSN: return "LSN out of sequence";
    case JNL_REC_BAD_FIELDS: return "bad header fields";
    case JNL_REC_TRUNCATED: return "torn record";
    }
    return "?";
}

void jnl_rec_hdr_encode(const jnl_rec_hdr_t *h, uint8_t out[JNL_REC_HDR_LEN])
{
    tm_put32(out, h->length);
    out[4] = h->type;
    out[5] = h->flags;
    tm_put16(out + 6, 0);
    tm_put64(out + 8, h->lsn);
    tm_put64(out + 16, h->time_ns);
    tm_put32(out + 24, h->raw_len);
    tm_put32(out + 28, h->batch_back);
    tm_put32(out + 32, h->salt32);
    tm_put32(out + 36, 0);
}

void jnl_rec_seal(uint8_t *rec, uint64_t salt)
{
    uint32_t length = tm_get32(rec);
    tm_put64(rec + length - JNL_REC_SUM_LEN, XXH3_64bits_withSeed(rec, length - JNL_REC_SUM_LEN, salt));
}

jnl_rec_verdict_t jnl_rec_check(const uint8_t *buf, size_t avail, uint64_t salt, uint64_t seg_first_lsn,
                                uint64_t expect_lsn, uint32_t max_len, jnl_rec_hdr_t *h)
{
    memset(h, 0, sizeof *h);
    if (avail < 4)
        return JNL_REC_SHORT_HEADER;
    h->length = tm_get32(buf);
    if (h->length == 0)
        return JNL_REC_ZERO_LENGTH;
    if (avail < JNL_REC_HDR_LEN)
        return JNL_REC_SHORT_HEADER;
    h->type = buf[4];
    h->flags = buf[5];
    h->lsn = tm_get64(buf + 8);
    h->time_ns = tm_get64(buf + 16);
    h->raw_len = tm_get32(buf + 24);
    h->batch_back = tm_get32(buf + 28);
    h->salt32 = tm_get32(buf + 32);
    /* Only the length is looked at before the checksum, and only to bound
     * how much is read (PostgreSQL's reader discipline). */
    uint64_t limit = (uint64_t)max_len + JNL_REC_OVERHEAD;
    if (h->length < JNL_REC_OVERHEAD || h->length > limit)
        return JNL_REC_BAD_LENGTH;
    if (h->salt32 != (uint32_t)salt)
        return JNL_REC_STALE_SALT;
    if (h->length > avail)
        return JNL_REC_TRUNCATED;
    uint64_t sum = tm_get64(buf + h->length - JNL_REC_SUM_LEN);
    if (sum != XXH3_64bits_withSeed(buf, h->length - JNL_REC_SUM_LEN, salt))
        return JNL_REC_BAD_CHECKSUM;
    if (expect_lsn != 0 && h->lsn != expect_lsn)
        return JNL_REC_BAD_LSN;
    uint32_t stored = h->length - JNL_REC_OVERHEAD;
    if (h->type == 0 || (h->flags & ~JNL_FLAGS_KNOWN) || tm_get16(buf + 6) != 0 || tm_get32(buf + 36) != 0 ||
        h->lsn < seg_first_lsn || h->batch_back > h->lsn - seg_first_lsn || h->raw_len > JNL_HARD_MAX_RECORD ||
        (!(h->flags & JNL_FLAG_LZ4) && h->raw_len != stored))
        return JNL_REC_BAD_FIELDS;
    return JNL_REC_OK;
}

int jnl_rec_payload(const uint8_t *rec, const jnl_rec_hdr_t *h, uint8_t *dst, const uint8_t **data_out)
{
    const uint8_t *stored = rec + JNL_REC_HDR_LEN;
    uint32_t stored_len = h->length - JNL_REC_OVERHEAD;
    if (!(h->flags & JNL_FLAG_LZ4)) {
        *data_out = stored;
        return 0;
    }
    int n = LZ4_decompress_safe((const char *)stored, (char *)dst, (int)stored_len, (int)h->raw_len);
    if (n < 0 || (uint32_t)n != h->raw_len)
        return TM_ECORRUPT;
    *data_out = dst;
    return 0;
}

static bool jnl__parse_hex_name(const char *name, const char *prefix, uint64_t *v)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 16 + 4 || strcmp(name + pl + 16, ".jnl") != 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < 16; i++) {
        char c = name[pl + i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        x = (x << 4) | (uint64_t)d;
    }
    *v = x;
    return true;
}

bool jnl_parse_seg_name(const char *name, uint64_t *seq)
{
    return jnl__parse_hex_name(name, "seg-", seq);
}

bool jnl_parse_spare_name(const char *name, uint64_t *n)
{
    return jnl__parse_hex_name(name, "spare-", n);
}
