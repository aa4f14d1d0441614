/*
 * Fuzz target: jnl_seg_hdr_decode() and the segment/spare file-name parsers.
 *
 * The input is the start of a file found in a journal folder. It is decoded
 * as given and, when long enough, again with the magic set and the checksum
 * recomputed, so the version and field checks behind the checksum are
 * reached. An accepted header must re-encode to the same 80 bytes. The same
 * bytes, as a string, go to the file-name parsers, whose accepted names must
 * print back unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "base/endian.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "journal/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jnl_hdr_verdict_t decode_one(const uint8_t *buf, size_t len)
{
    jnl_seg_hdr_t h;
    jnl_hdr_verdict_t v = jnl_seg_hdr_decode(buf, len, &h);
    FUZZ_ASSERT(jnl_hdr_verdict_str(v) != NULL);
    if (v == JNL_HDR_NOT_A_SEGMENT)
        FUZZ_ASSERT(len < JNL_SEG_HDR_LEN || memcmp(buf, JNL_MAGIC, JNL_MAGIC_LEN) != 0);
    if (v == JNL_HDR_BAD_VERSION)
        FUZZ_ASSERT(h.version != JNL_FORMAT_VERSION);
    if (v != JNL_HDR_OK)
        return v;
    FUZZ_ASSERT(h.version == JNL_FORMAT_VERSION && h.data_off == JNL_SEG_DATA_OFF);
    FUZZ_ASSERT(h.segment_size >= JNL_FMT_MIN_SEGMENT && h.first_lsn != 0 && h.salt != 0);
    uint8_t again[JNL_SEG_HDR_LEN];
    jnl_seg_hdr_encode(&h, again);
    FUZZ_ASSERT(memcmp(again, buf, JNL_SEG_HDR_LEN) == 0);
    return v;
}

static void check_names(const uint8_t *data, size_t size)
{
    char name[64];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';

    char back[64];
    uint64_t v;
    if (jnl_parse_seg_name(name, &v)) {
        snprintf(back, sizeof back, JNL_SEG_NAME_FMT, (unsigned long long)v);
        FUZZ_ASSERT(strcmp(back, name) == 0);
    }
    if (jnl_parse_spare_name(name, &v)) {
        snprintf(back, sizeof back, JNL_SPARE_NAME_FMT, (unsigned long long)v);
        FUZZ_ASSERT(strcmp(back, name) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_one(data, size);
    check_names(data, size);

    if (size < JNL_SEG_HDR_LEN)
        return 0;
    /* Exactly a header's bytes, so ASan sees any read past them. */
    uint8_t *hdr = tm_malloc(JNL_SEG_HDR_LEN);
    if (hdr == NULL)
        return 0;
    memcpy(hdr, data, JNL_SEG_HDR_LEN);
    memcpy(hdr, JNL_MAGIC, JNL_MAGIC_LEN);
    tm_put64(hdr + 72, XXH3_64bits(hdr, 72));
    jnl_hdr_verdict_t v = decode_one(hdr, JNL_SEG_HDR_LEN);
    if (tm_get32(hdr + 8) == JNL_FORMAT_VERSION)
        FUZZ_ASSERT(v == JNL_HDR_OK || v == JNL_HDR_BAD_FIELDS);
    else
        FUZZ_ASSERT(v == JNL_HDR_BAD_VERSION);
    tm_free(hdr);
    return 0;
}
