/*
 * End-of-log cases built from real segment files: a journal is written, closed,
 * and its bytes changed with the format helpers (PostgreSQL's 039_end_of_wal
 * approach). Each case asserts what recovery decided (end kind, reason,
 * position, LSNs), which records survive, the exact log line, and what
 * jnl_dump returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "journal/format.h"
#include "journal/journal.h"
#include "support/tmt.h"
#include "support/tmt_jnl.h"

#define SEG (64u << 10)
/* max_record must fit a segment (the default, 8 MiB, does not fit 64 KiB). */
#define MAXREC_OPT (32u << 10)
#define MAXREC 256

static char dir[PATH_MAX];

static void setup(void)
{
    tmt_mkdtemp(dir, "crafted");
    tmt_log_capture();
}

static void teardown(void)
{
    tmt_rmtree(dir);
}

TestSuite(crafted, .init = setup, .fini = teardown, .timeout = 60);

/* What the test knows about each record it wrote (index = LSN - 1). */
typedef struct built {
    size_t n;
    jnl_pos_t pos[MAXREC];
    uint32_t len[MAXREC];  /* payload */
    uint64_t end[MAXREC];  /* offset just past the record */
    uint64_t last_seg;
} built_t;

static built_t B;

static jnl_options_t opts(void)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT};
    return o;
}

static void payload(uint8_t *buf, size_t len, uint64_t lsn)
{
    tmt_fill(buf, len, 0xc0ffee, lsn, false);
}

/* Write n records, each its own batch (append_wait returns once durable),
 * with payload sizes from size(i); read their positions back; close. */
static void build(size_t n, size_t (*size)(size_t i))
{
    cr_assert_leq(n, MAXREC);
    jnl_options_t o = opts();
    jnl_t *j = tmt_open(dir, &o);
    static uint8_t buf[SEG];
    memset(&B, 0, sizeof B);
    for (size_t i = 0; i < n; i++) {
        B.len[i] = (uint32_t)size(i);
        payload(buf, B.len[i], i + 1);
        uint64_t lsn;
        int rc = jnl_append_wait(j, 1, buf, B.len[i], 0, &lsn);
        cr_assert_eq(rc, 0, "append %zu: %s", i, tm_strerror(rc));
        cr_assert_eq(lsn, i + 1);
    }
    uint8_t *rbuf = NULL;
    size_t cap = 0;
    jnl_reader_t *r;
    cr_assert_eq(jnl_reader_open(j, 0, &r), 0);
    for (size_t i = 0; i < n; i++) {
        jnl_record_t rec;
        int rc = jnl_reader_next(r, &rec);
        cr_assert_eq(rc, 0, "%s", tm_strerror(rc));
        cr_assert_eq(rec.lsn, i + 1);
        B.pos[i] = rec.pos;
        B.end[i] = rec.pos.off + JNL_REC_OVERHEAD + rec.stored_len;
        /* The same position through jnl_read_at. */
        jnl_record_t again;
        cr_assert_eq(jnl_read_at(j, rec.pos, &again, &rbuf, &cap), 0);
        cr_assert_eq(again.lsn, i + 1);
    }
    jnl_reader_close(r);
    tm_free(rbuf);
    B.n = n;
    B.last_seg = B.pos[n - 1].seg;
    jnl_close(j);
    jnl_destroy(j);
}

static size_t size_by_hundreds(size_t i)
{
    return 100 * (i + 1);
}

static size_t size_5000(size_t i)
{
    (void)i;
    return 5000;
}

static void seg_path(char *out, uint64_t seq)
{
    tmt_seg_path(out, dir, seq);
}

static jnl_seg_hdr_t hdr_of(uint64_t seq)
{
    char path[PATH_MAX];
    uint8_t buf[JNL_SEG_HDR_LEN];
    jnl_seg_hdr_t h;
    seg_path(path, seq);
    tmt_file_read(path, 0, buf, sizeof buf);
    cr_assert_eq(jnl_seg_hdr_decode(buf, sizeof buf, &h), JNL_HDR_OK);
    return h;
}

/* Write a sealed record at off of segment seq. */
static uint64_t put_rec(uint64_t seq, uint64_t off, uint64_t lsn, uint32_t batch_back, uint64_t salt,
                        uint32_t n, bool break_sum)
{
    uint8_t *rec = calloc(1, JNL_REC_OVERHEAD + n);
    jnl_rec_hdr_t h = {
        .length = JNL_REC_OVERHEAD + n,
        .type = 1,
        .lsn = lsn,
        .time_ns = 1,
        .raw_len = n,
        .batch_back = batch_back,
        .salt32 = (uint32_t)salt,
    };
    jnl_rec_hdr_encode(&h, rec);
    payload(rec + JNL_REC_HDR_LEN, n, lsn + 1000);
    jnl_rec_seal(rec, salt);
    if (break_sum)
        rec[JNL_REC_HDR_LEN + n / 2] ^= 0x04;
    char path[PATH_MAX];
    seg_path(path, seq);
    tmt_file_write(path, (off_t)off, rec, h.length);
    free(rec);
    return off + h.length;
}

/* Every record the journal wrote verifies with the format helpers, chained,
 * each in its own batch. */
static void check_on_disk_format(void)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < B.n; i++) {
        jnl_seg_hdr_t h = hdr_of(B.pos[i].seg);
        seg_path(path, B.pos[i].seg);
        size_t len = JNL_REC_OVERHEAD + B.len[i];
        uint8_t *buf = malloc(len);
        tmt_file_read(path, (off_t)B.pos[i].off, buf, len);
        jnl_rec_hdr_t rh;
        jnl_rec_verdict_t v = jnl_rec_check(buf, len, h.salt, h.first_lsn, i + 1, JNL_DEFAULT_MAX_RECORD, &rh);
        cr_assert_eq(v, JNL_REC_OK, "LSN %zu on disk: %s", i + 1, jnl_rec_verdict_str(v));
        cr_assert_eq(rh.batch_back, 0, "LSN %zu: append_wait makes one batch per record", i + 1);
        free(buf);
    }
}

typedef struct outcome {
    jnl_end_kind_t kind;
    const char *reason;
    uint64_t seg, off;
    uint64_t durable;
    uint64_t torn;
} outcome_t;

/* Open, check the recovery outcome and the surviving records (1..durable,
 * byte for byte against what build() wrote). Leaves the journal open. */
static jnl_t *open_expect(const outcome_t *w)
{
    jnl_options_t o = opts();
    jnl_t *j = tmt_open(dir, &o);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.end_kind, w->kind, "end_kind %d, want %d (reason \"%s\")", st.end_kind, w->kind,
                 st.end_reason);
    cr_assert_str_eq(st.end_reason, w->reason);
    cr_assert_eq(st.end_pos.seg, w->seg);
    cr_assert_eq(st.end_pos.off, w->off, "end_pos.off %llu, want %llu", (unsigned long long)st.end_pos.off,
                 (unsigned long long)w->off);
    cr_assert_eq(st.durable_lsn, w->durable);
    cr_assert_eq(st.next_lsn, w->durable + 1);
    cr_assert_eq(st.torn_records, w->torn);
    cr_assert_eq(st.error, 0);

    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    cr_assert_eq(n, w->durable, "records that survive");
    static uint8_t buf[SEG];
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(recs[i].lsn, i + 1);
        cr_assert_eq(recs[i].len, B.len[i]);
        payload(buf, B.len[i], i + 1);
        cr_assert_eq(memcmp(recs[i].data, buf, B.len[i]), 0, "LSN %zu bytes", i + 1);
    }
    tmt_recs_free(recs, n);
    return j;
}

/* Run jnl_dump, return its code; the output goes to *text (caller frees). */
static int dump(char **text)
{
    size_t sz = 0;
    FILE *f = open_memstream(text, &sz);
    cr_assert_not_null(f);
    int rc = jnl_dump(dir, f, true);
    fclose(f);
    return rc;
}

static void expect_dump(int want, const char *mention)
{
    char *text = NULL;
    int rc = dump(&text);
    cr_assert_eq(rc, want, "jnl_dump: %s, want %s; output:\n%s", tmt_errname(rc), tmt_errname(want), text);
    if (mention != NULL)
        cr_assert_not_null(strstr(text, mention), "jnl_dump names \"%s\"; output:\n%s", mention, text);
    free(text);
}

/* After a recovered end: the next append starts a new segment pinned to the
 * end, gets the next LSN, and a reopen sees exactly that. */
static void append_after(jnl_t *j, uint64_t end_seg, uint64_t end_off, uint64_t durable)
{
    tmt_group_t g;
    tmt_group_init(&g);
    tmt_req_t r = {0};
    cr_assert_eq(tmt_append(&g, &r, j, 2, "after", 5, 0), 0);
    cr_assert(tmt_group_wait(&g, 20000));
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.req.lsn, durable + 1);
    cr_assert_eq(r.req.pos.seg, end_seg + 1, "a new segment after open");
    jnl_seg_hdr_t h = hdr_of(end_seg + 1);
    cr_assert_eq(h.first_lsn, durable + 1);
    cr_assert_eq(h.prev_end, end_off, "the new segment pins where the old one ends");
    jnl_close(j);
    jnl_destroy(j);
    tmt_group_destroy(&g);

    jnl_options_t o = opts();
    j = tmt_open(dir, &o);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.end_kind, JNL_END_CLEAN);
    cr_assert_eq(st.durable_lsn, durable + 1);
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    cr_assert_eq(n, durable + 1);
    cr_assert_eq(recs[durable].len, 5);
    cr_assert_eq(memcmp(recs[durable].data, "after", 5), 0, "the new record, not what was cut off");
    tmt_recs_free(recs, n);
    jnl_close(j);
    jnl_destroy(j);
    expect_dump(0, NULL);
}

#define CLEAN_LINE "journal: log ends in segment %llu at offset %llu (%s), last LSN %llu"
#define TORN_LINE                                                                                             \
    "journal: torn tail in segment %llu at offset %llu (%s); the log ends at LSN %llu; %llu record(s) of the " \
    "unfinished batch dropped"
#define CORRUPT_LINE                                                                                          \
    "journal: corruption in segment %llu at offset %llu (%s): durable records follow at offset %llu; "       \
    "refusing to open (inspect with: tidemark journal dump %s)"
#define ULL(x) ((unsigned long long)(x))

/* ---- clean ends ---------------------------------------------------------- */

Test(crafted, untouched_end_is_clean)
{
    build(5, size_by_hundreds);
    check_on_disk_format();
    outcome_t w = {JNL_END_CLEAN, "zero length", 1, B.end[4], 5, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_INFO, CLEAN_LINE, 1ull, ULL(B.end[4]), "zero length", 5ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.end[4], 5);
}

Test(crafted, zero_length_at_end)
{
    build(5, size_by_hundreds);
    char path[PATH_MAX];
    seg_path(path, 1);
    size_t len = B.end[4] - B.pos[4].off;
    uint8_t *zeros = calloc(1, len);
    tmt_file_write(path, (off_t)B.pos[4].off, zeros, len);
    free(zeros);

    outcome_t w = {JNL_END_CLEAN, "zero length", 1, B.pos[4].off, 4, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_INFO, CLEAN_LINE, 1ull, ULL(B.pos[4].off), "zero length", 4ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.pos[4].off, 4);
}

Test(crafted, stale_salt_at_end)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* A record of an earlier life of the file: right LSN, other salt. */
    uint64_t old_salt = h.salt ^ 0x00000000a5a5a5a5ull;
    put_rec(1, B.end[4], 6, 0, old_salt, 300, false);

    outcome_t w = {JNL_END_CLEAN, "stale salt", 1, B.end[4], 5, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_INFO, CLEAN_LINE, 1ull, ULL(B.end[4]), "stale salt", 5ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.end[4], 5);
}

/* ---- torn tails ----------------------------------------------------------- */

Test(crafted, short_header)
{
    build(5, size_by_hundreds);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_truncate(path, (off_t)B.pos[4].off + 20);

    outcome_t w = {JNL_END_TORN, "short header", 1, B.pos[4].off, 4, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.pos[4].off), "short header", 4ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.pos[4].off, 4);
}

Test(crafted, bad_checksum_in_last_record)
{
    build(5, size_by_hundreds);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_flip_bit(path, (off_t)B.pos[4].off + JNL_REC_HDR_LEN + 10, 3);

    outcome_t w = {JNL_END_TORN, "bad checksum", 1, B.pos[4].off, 4, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.pos[4].off), "bad checksum", 4ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.pos[4].off, 4);
}

Test(crafted, torn_last_record)
{
    build(5, size_by_hundreds);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_truncate(path, (off_t)B.pos[4].off + JNL_REC_HDR_LEN + 50);

    outcome_t w = {JNL_END_TORN, "torn record", 1, B.pos[4].off, 4, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.pos[4].off), "torn record", 4ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.pos[4].off, 4);
}

Test(crafted, unfinished_batch_records_dropped)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* A batch of LSNs 6, 7, 8 whose first record never fully landed: 7 and
     * 8 look valid, but their batch began at 6 (batch_back 1 and 2), so
     * nothing proves the batch was synced. */
    uint64_t o6 = B.end[4];
    uint64_t o7 = put_rec(1, o6, 6, 0, h.salt, 200, true);
    uint64_t o8 = put_rec(1, o7, 7, 1, h.salt, 200, false);
    put_rec(1, o8, 8, 2, h.salt, 200, false);

    outcome_t w = {JNL_END_TORN, "bad checksum", 1, o6, 5, 2};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(o6), "bad checksum", 5ull, 2ull);
    expect_dump(0, NULL);
    append_after(j, 1, o6, 5);
}

Test(crafted, lsn_out_of_sequence_at_end)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* Right salt, good checksum, an LSN that does not follow (its batch began
     * at 3, before the expected 6, so it proves nothing): a torn tail. */
    put_rec(1, B.end[4], 3, 0, h.salt, 100, false);

    outcome_t w = {JNL_END_TORN, "LSN out of sequence", 1, B.end[4], 5, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.end[4]), "LSN out of sequence", 5ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.end[4], 5);
}

Test(crafted, bad_fields_at_end)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* Checksum right, type 0: a record the writer never makes. */
    uint8_t rec[JNL_REC_OVERHEAD + 10] = {0};
    jnl_rec_hdr_t rh = {.length = sizeof rec, .type = 0, .lsn = 6, .raw_len = 10, .salt32 = (uint32_t)h.salt};
    jnl_rec_hdr_encode(&rh, rec);
    jnl_rec_seal(rec, h.salt);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_write(path, (off_t)B.end[4], rec, sizeof rec);

    outcome_t w = {JNL_END_TORN, "bad header fields", 1, B.end[4], 5, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.end[4]), "bad header fields", 5ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.end[4], 5);
}

Test(crafted, bad_length_at_end)
{
    build(5, size_by_hundreds);
    /* A length below the smallest record. (One past the end of the file
     * reads as a torn record: see torn_last_record.) */
    uint8_t len[4];
    tm_put32(len, JNL_REC_OVERHEAD - 1);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_write(path, (off_t)B.pos[4].off, len, 4);

    outcome_t w = {JNL_END_TORN, "bad length", 1, B.pos[4].off, 4, 0};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(B.pos[4].off), "bad length", 4ull, 0ull);
    expect_dump(0, NULL);
    append_after(j, 1, B.pos[4].off, 4);
}

Test(crafted, zero_length_then_records_of_its_batch)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* A batch of LSNs 6 and 7 of which only 7 landed: 6's space is still
     * zero. 7 proves nothing (its batch began at 6), and it is dropped.
     * A torn tail, not a clean end, although the verdict at the end is
     * "zero length": a record of the batch was dropped. */
    uint64_t o6 = B.end[4];
    put_rec(1, o6 + JNL_REC_OVERHEAD + 200, 7, 1, h.salt, 200, false);

    outcome_t w = {JNL_END_TORN, "zero length", 1, o6, 5, 1};
    jnl_t *j = open_expect(&w);
    tmt_assert_log(TM_LOG_WARN, TORN_LINE, 1ull, ULL(o6), "zero length", 5ull, 1ull);
    expect_dump(0, NULL);
    append_after(j, 1, o6, 5);
}

Test(crafted, lz4_garbage_with_a_good_checksum)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    /* LSN 6, flagged lz4, whose stored bytes do not decompress, sealed: only
     * a writer bug or a forger makes this. Whatever recovery decides, its
     * bytes are never handed out as data. */
    uint8_t rec[JNL_REC_OVERHEAD + 64];
    jnl_rec_hdr_t rh = {.length = sizeof rec, .type = 1, .flags = JNL_FLAG_LZ4, .lsn = 6, .raw_len = 5000,
                        .salt32 = (uint32_t)h.salt};
    jnl_rec_hdr_encode(&rh, rec);
    memset(rec + JNL_REC_HDR_LEN, 0xff, 64);
    jnl_rec_seal(rec, h.salt);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_write(path, (off_t)B.end[4], rec, sizeof rec);

    jnl_options_t o = opts();
    jnl_t *j = tmt_open(dir, &o);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert(st.durable_lsn == 5 || st.durable_lsn == 6, "durable_lsn %llu", ULL(st.durable_lsn));
    jnl_reader_t *r;
    cr_assert_eq(jnl_reader_open(j, 0, &r), 0);
    jnl_record_t got;
    for (uint64_t lsn = 1; lsn <= 5; lsn++) {
        cr_assert_eq(jnl_reader_next(r, &got), 0);
        cr_assert_eq(got.lsn, lsn);
    }
    int rc = jnl_reader_next(r, &got);
    if (st.durable_lsn == 5) {
        cr_assert_eq(rc, -EAGAIN, "%s", tmt_errname(rc));
    } else {
        cr_assert_eq(rc, TM_ECORRUPT, "LSN 6 read as %s", tmt_errname(rc));
        uint8_t *buf = NULL;
        size_t cap = 0;
        jnl_pos_t p6 = {1, B.end[4]};
        rc = jnl_read_at(j, p6, &got, &buf, &cap);
        cr_assert_eq(rc, TM_ECORRUPT, "read_at LSN 6: %s", tmt_errname(rc));
        tm_free(buf);
    }
    jnl_reader_close(r);
    jnl_close(j);
    jnl_destroy(j);
}

/* ---- corruption in front of durable records ----------------------------- */

Test(crafted, flipped_bit_before_later_batches)
{
    build(5, size_by_hundreds);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_flip_bit(path, (off_t)B.pos[2].off + JNL_REC_HDR_LEN + 7, 0);

    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT, "%s", tmt_errname(rc));
    cr_assert_null(j, "*out is set only on success");
    tmt_assert_log(TM_LOG_ERROR, CORRUPT_LINE, 1ull, ULL(B.pos[2].off), "bad checksum", ULL(B.pos[3].off), dir);
    expect_dump(TM_ECORRUPT, "bad checksum");
    /* Nothing was changed by the refusal: the file still holds all five. */
    tmt_log_clear();
    rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT);
    cr_assert_eq(tmt_count_files(dir, "seg-"), 1);
}

Test(crafted, later_crafted_batch_proves_corruption)
{
    build(5, size_by_hundreds);
    jnl_seg_hdr_t h = hdr_of(1);
    uint64_t o6 = B.end[4];
    uint64_t o7 = put_rec(1, o6, 6, 0, h.salt, 200, true);
    put_rec(1, o7, 7, 0, h.salt, 200, false); /* a batch that began at 7 */

    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT, "%s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR, CORRUPT_LINE, 1ull, ULL(o6), "bad checksum", ULL(o7), dir);
    expect_dump(TM_ECORRUPT, "bad checksum");
}

Test(crafted, flipped_bit_in_sealed_segment)
{
    build(30, size_5000);
    cr_assert_geq(B.last_seg, 3);
    check_on_disk_format();
    /* LSN 5 sits in segment 1, which has successors. */
    cr_assert_eq(B.pos[4].seg, 1);
    char path[PATH_MAX];
    seg_path(path, 1);
    tmt_file_flip_bit(path, (off_t)B.pos[4].off + JNL_REC_HDR_LEN + 100, 5);

    /* Only the last segment is scanned at open: this opens fine... */
    jnl_options_t o = opts();
    jnl_t *j = tmt_open(dir, &o);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.end_kind, JNL_END_CLEAN);
    cr_assert_eq(st.durable_lsn, 30);

    /* ...but reading finds it, and never returns its bytes as data. */
    jnl_reader_t *r;
    cr_assert_eq(jnl_reader_open(j, 0, &r), 0);
    jnl_record_t rec;
    for (uint64_t lsn = 1; lsn <= 4; lsn++) {
        cr_assert_eq(jnl_reader_next(r, &rec), 0);
        cr_assert_eq(rec.lsn, lsn);
    }
    tmt_log_clear();
    int rc = jnl_reader_next(r, &rec);
    cr_assert_eq(rc, TM_ECORRUPT, "reader at the flipped record: %s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR, "journal: corrupt record in segment 1 at offset %llu (bad checksum)",
                   ULL(B.pos[4].off));
    jnl_reader_close(r);

    uint8_t *buf = NULL;
    size_t cap = 0;
    tmt_log_clear();
    rc = jnl_read_at(j, B.pos[4], &rec, &buf, &cap);
    cr_assert_eq(rc, TM_ECORRUPT, "read_at the flipped record: %s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR, "journal: corrupt record in segment 1 at offset %llu (bad checksum)",
                   ULL(B.pos[4].off));
    cr_assert_eq(jnl_read_at(j, B.pos[3], &rec, &buf, &cap), 0, "its neighbours read fine");
    cr_assert_eq(rec.lsn, 4);
    cr_assert_eq(jnl_read_at(j, B.pos[5], &rec, &buf, &cap), 0);
    cr_assert_eq(rec.lsn, 6);
    tm_free(buf);

    /* A reader that starts in a later segment never touches it. */
    uint64_t from = 0;
    for (size_t i = 0; i < B.n && from == 0; i++)
        if (B.pos[i].seg == 2)
            from = i + 1;
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, from, &recs);
    cr_assert_eq(n, 30 - from + 1);
    tmt_recs_free(recs, n);
    jnl_close(j);
    jnl_destroy(j);

    /* verify_all checks sealed segments too. */
    tmt_log_clear();
    o.verify_all = true;
    j = NULL;
    rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT, "verify_all: %s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR, "journal: corruption in sealed segment 1 at offset %llu (bad checksum); refusing to open",
                   ULL(B.pos[4].off));
    expect_dump(TM_ECORRUPT, "bad checksum");
}

Test(crafted, verify_all_on_a_whole_log)
{
    build(30, size_5000);
    jnl_options_t o = opts();
    o.verify_all = true;
    jnl_t *j = tmt_open(dir, &o);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.durable_lsn, 30);
    jnl_close(j);
    jnl_destroy(j);
    expect_dump(0, NULL);
}

/* ---- versions and headers ------------------------------------------------ */

static void set_version(uint64_t seq, uint32_t version)
{
    char path[PATH_MAX];
    uint8_t v[4];
    seg_path(path, seq);
    tm_put32(v, version);
    tmt_file_write(path, 8, v, 4); /* the checksum is left as it was */
}

Test(crafted, unknown_version)
{
    build(5, size_by_hundreds);
    set_version(1, 2);
    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_EVERSION, "%s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR,
                   "journal: segment seg-0000000000000001.jnl has format version 2; this build reads version 1; "
                   "refusing to open");

    tmt_log_clear();
    o.read_only = true;
    rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_EVERSION, "read-only: %s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR,
                   "journal: segment seg-0000000000000001.jnl has format version 2; this build reads version 1; "
                   "refusing to open");
    expect_dump(TM_EVERSION, NULL);
}

Test(crafted, unknown_version_in_a_middle_segment)
{
    build(30, size_5000);
    cr_assert_geq(B.last_seg, 3);
    set_version(2, 7);
    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_EVERSION, "%s", tmt_errname(rc));
    tmt_assert_log(TM_LOG_ERROR,
                   "journal: segment seg-0000000000000002.jnl has format version 7; this build reads version 1; "
                   "refusing to open");
    expect_dump(TM_EVERSION, NULL);
}

/* ---- left-overs of an interrupted roll, and bad headers ------------------ */

typedef enum { LEFT_ZEROS, LEFT_BAD_SUM, LEFT_WRONG_SEQ } leftover_t;

static void leftover_case(leftover_t kind)
{
    build(5, size_by_hundreds);
    char p1[PATH_MAX], p2[PATH_MAX];
    seg_path(p1, 1);
    seg_path(p2, 2);
    tmt_file_create(p2, SEG);
    uint8_t hb[JNL_SEG_HDR_LEN];
    tmt_file_read(p1, 0, hb, sizeof hb);
    if (kind == LEFT_BAD_SUM) {
        jnl_seg_hdr_t h = hdr_of(1);
        h.seq = 2;
        h.first_lsn = 6;
        h.prev_end = B.end[4];
        jnl_seg_hdr_encode(&h, hb);
        hb[60] ^= 1;
        tmt_file_write(p2, 0, hb, sizeof hb);
    } else if (kind == LEFT_WRONG_SEQ) {
        tmt_file_write(p2, 0, hb, sizeof hb); /* says seq 1 in file 2 */
    }

    outcome_t w = {JNL_END_CLEAN, "zero length", 1, B.end[4], 5, 0};
    jnl_t *j = open_expect(&w);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.segments, 1, "the left-over is not a segment of the log");
    expect_dump(0, NULL);
    /* The file is reused for the next segment: seq 2 again, now valid. */
    append_after(j, 1, B.end[4], 5);
    cr_assert_eq(tmt_count_files(dir, "seg-"), 2);
}

Test(crafted, leftover_zeros)
{
    leftover_case(LEFT_ZEROS);
}

Test(crafted, leftover_bad_header_checksum)
{
    leftover_case(LEFT_BAD_SUM);
}

Test(crafted, leftover_wrong_seq)
{
    leftover_case(LEFT_WRONG_SEQ);
}

Test(crafted, bad_header_in_the_middle)
{
    build(30, size_5000);
    cr_assert_geq(B.last_seg, 3);
    char path[PATH_MAX];
    seg_path(path, 2);
    tmt_file_flip_bit(path, 50, 2); /* inside first_lsn: the header checksum fails */
    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT, "%s", tmt_errname(rc));
    expect_dump(TM_ECORRUPT, NULL);
}

static void rewrite_hdr(uint64_t seq, void (*edit)(jnl_seg_hdr_t *h))
{
    jnl_seg_hdr_t h = hdr_of(seq);
    edit(&h);
    uint8_t hb[JNL_SEG_HDR_LEN];
    jnl_seg_hdr_encode(&h, hb);
    char path[PATH_MAX];
    seg_path(path, seq);
    tmt_file_write(path, 0, hb, sizeof hb);
}

static void other_journal(jnl_seg_hdr_t *h)
{
    h->journal_id ^= 0x1000;
}

static void break_chain(jnl_seg_hdr_t *h)
{
    h->first_lsn += 1;
}

Test(crafted, foreign_segment)
{
    build(30, size_5000);
    cr_assert_geq(B.last_seg, 3);
    rewrite_hdr(2, other_journal);
    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_EFOREIGN, "%s", tmt_errname(rc));
    expect_dump(TM_EFOREIGN, NULL);
}

Test(crafted, broken_segment_chain)
{
    build(30, size_5000);
    cr_assert_geq(B.last_seg, 3);
    /* Segment 3 claims a first LSN that does not follow segment 2. */
    rewrite_hdr(3, break_chain);
    jnl_options_t o = opts();
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, TM_ECORRUPT, "%s", tmt_errname(rc));
    expect_dump(TM_ECORRUPT, NULL);
}
