/*
 * Journal on-disk format, version 1. docs/journal-format.md says the same in
 * prose; change both together and bump JNL_FORMAT_VERSION with any change.
 *
 * A journal is a folder of segment files named seg-<seq, 16 hex digits>.jnl,
 * plus retired files kept for reuse named spare-<n>.jnl. All integers are
 * little-endian, written with base/endian.h helpers.
 *
 * Segment header, at offset 0, JNL_SEG_HDR_LEN bytes (the rest of the first
 * JNL_SEG_DATA_OFF bytes is zero):
 *
 *   off size field
 *     0    8 magic        "TMJL\r\n\x1a\n" (catches text-mode transfers)
 *     8    4 version      JNL_FORMAT_VERSION
 *    12    4 data_off     JNL_SEG_DATA_OFF: where the first record starts
 *    16    8 segment_size bytes the file was preallocated to
 *    24    8 seq          the segment's sequence number; equals the file name's
 *    32    8 journal_id   random at creation; equal in all segments of a journal
 *    40    8 salt         random each time the file is (re)initialised
 *    48    8 first_lsn    the LSN the segment's first record has
 *    56    8 prev_end     where records end in segment seq-1 (0 for the first)
 *    64    8 created_ns   wall clock at initialisation
 *    72    8 checksum     XXH3-64 (seed 0) of bytes 0..71
 *
 * Record, at data_off or right after the previous record, no padding:
 *
 *   off size field
 *     0    4 length       whole record: header + stored payload + checksum
 *     4    1 type         1..255 (0 is never written: zeroed space reads as "end")
 *     5    1 flags        bit 0: payload is lz4 block-compressed; others zero
 *     6    2 reserved     zero
 *     8    8 lsn          journal-wide, gapless: previous record's + 1
 *    16    8 time_ns      wall clock at append
 *    24    4 raw_len      payload length before compression
 *    28    4 batch_back   lsn minus the LSN of the first record of its batch
 *    32    4 salt32       low 32 bits of the segment's salt
 *    36    4 reserved     zero
 *    40    n payload      length - 48 bytes
 *  40+n    8 checksum     XXH3-64 seeded with the segment's salt, of bytes 0..40+n-1
 *
 * A record at offset o of segment S is valid iff: length >= 48 and the record
 * lies inside the file, salt32 matches S, the checksum verifies, lsn is the
 * expected next LSN, batch_back <= lsn - S.first_lsn, type != 0, flags and
 * reserved fields are as above, and (if compressed) it decompresses to
 * exactly raw_len bytes. The salt in the checksum seed rejects records left
 * by an earlier life of a recycled file; the LSN chain rejects stale records
 * at a coincidental offset.
 *
 * A batch is the set of records written by one write + fdatasync; the next
 * batch is not written until that sync returned. So at recovery, after the
 * first invalid record X in the last segment (expected LSN E):
 *   - a later valid record whose batch began after E (lsn - batch_back > E)
 *     proves X's batch was synced: X is corruption, and open refuses;
 *   - otherwise X's batch was never completed: the tail from X on is torn,
 *     and the log ends at X (valid-looking records of that batch are dropped;
 *     none of them was acknowledged).
 * A sealed segment (one with a successor) ends exactly at the successor's
 * prev_end; any invalid record before that is corruption.
 */
#ifndef TM_JOURNAL_FORMAT_H
#define TM_JOURNAL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JNL_FORMAT_VERSION 1u
#define JNL_MAGIC "TMJL\r\n\x1a\n"
#define JNL_MAGIC_LEN 8
#define JNL_SEG_HDR_LEN 80
#define JNL_SEG_DATA_OFF 4096u
#define JNL_REC_HDR_LEN 40
#define JNL_REC_SUM_LEN 8
#define JNL_REC_OVERHEAD (JNL_REC_HDR_LEN + JNL_REC_SUM_LEN)
#define JNL_FLAG_LZ4 0x01u
#define JNL_FLAGS_KNOWN JNL_FLAG_LZ4
/* Hard ceiling on any payload, compressed or not, whatever the options say:
 * a length read from disk is compared with this before any allocation. */
#define JNL_HARD_MAX_RECORD (64u << 20)
/* Smallest segment file a header may describe. */
#define JNL_FMT_MIN_SEGMENT (1u << 16)

typedef struct jnl_seg_hdr {
    uint32_t version;
    uint32_t data_off;
    uint64_t segment_size;
    uint64_t seq;
    uint64_t journal_id;
    uint64_t salt;
    uint64_t first_lsn;
    uint64_t prev_end;
    uint64_t created_ns;
} jnl_seg_hdr_t;

/* Outcome of decoding a segment header. */
typedef enum {
    JNL_HDR_OK,
    JNL_HDR_NOT_A_SEGMENT, /* no magic: unwritten or foreign bytes */
    JNL_HDR_BAD_VERSION,   /* magic right, version unknown: refuse */
    JNL_HDR_BAD_CHECKSUM,
    JNL_HDR_BAD_FIELDS,    /* checksum right, values impossible */
} jnl_hdr_verdict_t;

void jnl_seg_hdr_encode(const jnl_seg_hdr_t *h, uint8_t out[JNL_SEG_HDR_LEN]);
/* Decodes what it can into *h even when the verdict is not OK (for reports). */
jnl_hdr_verdict_t jnl_seg_hdr_decode(const uint8_t *buf, size_t len, jnl_seg_hdr_t *h);
const char *jnl_hdr_verdict_str(jnl_hdr_verdict_t v);

/* A record's header fields. */
typedef struct jnl_rec_hdr {
    uint32_t length;
    uint8_t type;
    uint8_t flags;
    uint64_t lsn;
    uint64_t time_ns;
    uint32_t raw_len;
    uint32_t batch_back;
    uint32_t salt32;
} jnl_rec_hdr_t;

/* Outcome of checking the bytes at one offset. Stable names in
 * jnl_rec_verdict_str() appear in logs and in `journal dump`. */
typedef enum {
    JNL_REC_OK,
    JNL_REC_ZERO_LENGTH,  /* length field is 0: unwritten space */
    JNL_REC_SHORT_HEADER, /* fewer than a header's bytes left in the file */
    JNL_REC_BAD_LENGTH,   /* below the minimum, past the file, or over the limit */
    JNL_REC_STALE_SALT,   /* written in an earlier life of this file */
    JNL_REC_BAD_CHECKSUM,
    JNL_REC_BAD_LSN,      /* checksum right, not the next LSN */
    JNL_REC_BAD_FIELDS,   /* checksum right, type 0, unknown flags, bad batch_back */
    JNL_REC_TRUNCATED,    /* header fine, the record runs past the bytes given */
} jnl_rec_verdict_t;

const char *jnl_rec_verdict_str(jnl_rec_verdict_t v);

/* Encode a record header (everything but the checksum) into out. */
void jnl_rec_hdr_encode(const jnl_rec_hdr_t *h, uint8_t out[JNL_REC_HDR_LEN]);

/* Fill in the checksum of the record that starts at rec (its length field
 * must be set). */
void jnl_rec_seal(uint8_t *rec, uint64_t salt);

/*
 * Check the record at buf, where avail bytes are available (the rest of the
 * file from this offset, or what a caller holds of it). seg_first_lsn and
 * expect_lsn come from the caller; expect_lsn 0 skips the LSN check (reads by
 * position). max_len bounds length. On JNL_REC_OK *h is the header; on other
 * verdicts *h holds what could be read. Reads at most min(avail, length) bytes.
 */
jnl_rec_verdict_t jnl_rec_check(const uint8_t *buf, size_t avail, uint64_t salt, uint64_t seg_first_lsn,
                                uint64_t expect_lsn, uint32_t max_len, jnl_rec_hdr_t *h);

/* Decompress or point at a valid record's payload. dst must hold raw_len
 * bytes when compressed. Returns 0 or TM_ECORRUPT. */
int jnl_rec_payload(const uint8_t *rec, const jnl_rec_hdr_t *h, uint8_t *dst, const uint8_t **data_out);

/* File names. */
#define JNL_SEG_NAME_FMT "seg-%016llx.jnl"
#define JNL_SPARE_NAME_FMT "spare-%016llx.jnl"
bool jnl_parse_seg_name(const char *name, uint64_t *seq);
bool jnl_parse_spare_name(const char *name, uint64_t *n);

#endif
