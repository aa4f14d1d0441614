/*
 * Writes the fuzz targets' seed corpus: a few valid records and segment
 * headers, and the end-of-log shapes recovery meets (zeroed space, a torn
 * record, a stale salt, an unknown version); one valid agent protocol
 * frame of each type, and a group round's frames together; NBD client
 * sessions (options, then requests, valid and refused); and HTTP requests to the API's server (valid, pipelined,
 * chunked, refused, malformed). The output is committed under fuzz/corpus/; rerun
 * after a format or protocol change:
 *
 *     fuzz_gen_corpus fuzz/corpus
 *
 * Everything is fixed (salts, times, payloads), so a rerun gives the same
 * bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lz4.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "journal/format.h"
#include "nbd/nbd_int.h"
#include "wire/msg.h"
#include "wire/wire.h"

static int write_file(const char *dir, const char *sub, const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -errno;
    int rc = 0;
    if (len > 0 && fwrite(buf, 1, len, f) != len)
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    return rc;
}

/* Build one record at out (which must hold JNL_REC_OVERHEAD + the stored
 * payload) and return its length. Compressed when lz4 is asked and helps. */
static uint32_t make_record(uint8_t *out, uint8_t type, uint64_t lsn, uint32_t batch_back, const uint8_t *payload,
                            uint32_t len, int try_lz4, uint64_t salt)
{
    jnl_rec_hdr_t h = {
        .type = type,
        .lsn = lsn,
        .time_ns = FUZZ_TIME_NS + lsn,
        .raw_len = len,
        .batch_back = batch_back,
        .salt32 = (uint32_t)salt,
    };
    uint32_t stored = len;
    if (try_lz4) {
        int n = LZ4_compress_default((const char *)payload, (char *)out + JNL_REC_HDR_LEN, (int)len, (int)len);
        if (n > 0 && (uint32_t)n < len) {
            stored = (uint32_t)n;
            h.flags = JNL_FLAG_LZ4;
        }
    }
    if (!(h.flags & JNL_FLAG_LZ4))
        memcpy(out + JNL_REC_HDR_LEN, payload, len);
    h.length = stored + JNL_REC_OVERHEAD;
    jnl_rec_hdr_encode(&h, out);
    jnl_rec_seal(out, salt);
    return h.length;
}

static int gen_records(const char *dir)
{
    const char *sub = "fuzz_journal_record";
    enum { CAP = 8192 };
    int rc = -ENOMEM;
    uint8_t *buf = tm_malloc(CAP);
    uint8_t *payload = tm_malloc(2048);
    if (buf == NULL || payload == NULL)
        goto out_free;

    static const char hello[] = "hello, journal";
    uint32_t n = make_record(buf, 1, 1, 0, (const uint8_t *)hello, sizeof hello - 1, 0, FUZZ_SALT_A);
    if ((rc = write_file(dir, sub, "record-small", buf, n)) != 0)
        goto out_free;
    /* Cut inside the header, as a torn write can leave it. */
    if ((rc = write_file(dir, sub, "record-short-header", buf, JNL_REC_HDR_LEN / 2)) != 0)
        goto out_free;

    for (uint32_t i = 0; i < 64; i++)
        payload[i] = (uint8_t)(i * 37 + 11);
    n = make_record(buf, 2, 7, 3, payload, 64, 0, FUZZ_SALT_A);
    if ((rc = write_file(dir, sub, "record-in-batch", buf, n)) != 0)
        goto out_free;
    /* Header whole, payload cut short: a torn record. */
    if ((rc = write_file(dir, sub, "record-torn", buf, n - 16)) != 0)
        goto out_free;
    /* One flipped payload bit: the checksum must catch it. */
    buf[JNL_REC_HDR_LEN + 5] ^= 0x10;
    if ((rc = write_file(dir, sub, "record-bit-flip", buf, n)) != 0)
        goto out_free;

    /* Compressible: a repeating text, so lz4 is kept. */
    for (uint32_t i = 0; i < 2048; i++)
        payload[i] = (uint8_t)"tidemark journal "[i % 17];
    n = make_record(buf, 3, 42, 0, payload, 2048, 1, FUZZ_SALT_A);
    if ((rc = write_file(dir, sub, "record-lz4", buf, n)) != 0)
        goto out_free;

    n = make_record(buf, 255, 1000, 999, payload, 0, 0, FUZZ_SALT_A);
    if ((rc = write_file(dir, sub, "record-empty-payload", buf, n)) != 0)
        goto out_free;

    /* Two records back to back: the second starts where the first ends. */
    n = make_record(buf, 1, 5, 0, payload, 100, 0, FUZZ_SALT_A);
    n += make_record(buf + n, 1, 6, 1, payload + 100, 100, 1, FUZZ_SALT_A);
    if ((rc = write_file(dir, sub, "record-pair", buf, n)) != 0)
        goto out_free;

    /* Left by an earlier life of the file: valid under FUZZ_SALT_B only. */
    n = make_record(buf, 1, 3, 0, payload, 200, 0, FUZZ_SALT_B);
    if ((rc = write_file(dir, sub, "record-other-salt", buf, n)) != 0)
        goto out_free;

    /* Preallocated, never written space. */
    memset(buf, 0, 128);
    rc = write_file(dir, sub, "zeroes", buf, 128);

out_free:
    tm_free(payload);
    tm_free(buf);
    return rc;
}

static int gen_headers(const char *dir)
{
    const char *sub = "fuzz_journal_segment";
    uint8_t page[JNL_SEG_DATA_OFF];
    jnl_seg_hdr_t h = {
        .version = JNL_FORMAT_VERSION,
        .data_off = JNL_SEG_DATA_OFF,
        .segment_size = 64u << 20,
        .seq = 1,
        .journal_id = 0x1dea11ce0ddba11ull,
        .salt = FUZZ_SALT_A,
        .first_lsn = 1,
        .prev_end = 0,
        .created_ns = FUZZ_TIME_NS,
    };
    int rc;

    jnl_seg_hdr_encode(&h, page);
    if ((rc = write_file(dir, sub, "header-first", page, JNL_SEG_HDR_LEN)) != 0)
        return rc;

    /* A whole first page, as it sits in the file: header, then zeroes. */
    h.seq = 9;
    h.first_lsn = 123457;
    h.prev_end = 7340032;
    h.salt = FUZZ_SALT_B;
    memset(page, 0, sizeof page);
    jnl_seg_hdr_encode(&h, page);
    if ((rc = write_file(dir, sub, "header-page", page, sizeof page)) != 0)
        return rc;

    /* A later format: must be refused by version, not as garbage. */
    h.version = 2;
    jnl_seg_hdr_encode(&h, page);
    if ((rc = write_file(dir, sub, "header-version-2", page, JNL_SEG_HDR_LEN)) != 0)
        return rc;

    static const char seg[] = "seg-0000000000000001.jnl";
    static const char spare[] = "spare-00000000000000ff.jnl";
    if ((rc = write_file(dir, sub, "name-seg", (const uint8_t *)seg, sizeof seg - 1)) != 0)
        return rc;
    return write_file(dir, sub, "name-spare", (const uint8_t *)spare, sizeof spare - 1);
}

/* One fuzz_wire_frame seed: the byte it reads as its cutting plan (0: the
 * stream in one read), then the frames in b. Empties b. */
static int wire_seed(const char *dir, const char *name, uint8_t plan, wire_buf_t *b)
{
    int rc = -ENOMEM;
    uint8_t *buf = b->oom ? NULL : tm_malloc(b->len + 1);
    if (buf != NULL) {
        buf[0] = plan;
        memcpy(buf + 1, b->data, b->len);
        rc = write_file(dir, "fuzz_wire_frame", name, buf, b->len + 1);
        tm_free(buf);
    }
    wire_buf_reset(b);
    return rc;
}

static int gen_wire(const char *dir)
{
    wire_buf_t b = {0};
    int rc = -ENOMEM; /* what a failing encoder means here */
    static uint8_t data[4096];

    wire_hello_t h = {.version = WIRE_VERSION, .ndisks = 2, .machine = "db-01", .agent_version = "0.1.0"};
    memcpy(h.disks[0].name, "sda", 4);
    h.disks[0].size = 10u << 30;
    memcpy(h.disks[1].name, "sdb.data", 9);
    h.disks[1].size = 1u << 20;
    if (wire_enc_hello(&b, &h) != 0 || (rc = wire_seed(dir, "hello", 0, &b)) != 0)
        goto out;

    uint8_t mac[WIRE_MAC_LEN];
    for (unsigned i = 0; i < sizeof mac; i++)
        mac[i] = (uint8_t)(i * 29 + 3);
    rc = -ENOMEM;
    /* A byte at a time. */
    if (wire_enc_auth(&b, mac) != 0 || (rc = wire_seed(dir, "auth", 1, &b)) != 0)
        goto out;

    /* Every record kind, raw; then writes lz4 compressed. */
    for (unsigned i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 7));
    wire_entry_t e[] = {
        {.kind = WIRE_R_WRITE, .disk = 0, .length = 1024, .offset = 8192, .data = data},
        {.kind = WIRE_R_ZERO, .disk = 1, .length = 65536, .offset = 0},
        {.kind = WIRE_R_TRIM, .disk = 1, .length = 512, .offset = 1u << 19},
        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 6, .id = 7, .data = (const uint8_t *)"hourly"},
        {.kind = WIRE_R_FLUSH},
    };
    rc = -ENOMEM;
    if (wire_enc_records(&b, 1, e, 5, false) != 0 || (rc = wire_seed(dir, "records-raw", 0x23, &b)) != 0)
        goto out;
    for (unsigned i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)"tidemark agent "[(i / 16) % 15];
    wire_entry_t z[] = {
        {.kind = WIRE_R_WRITE, .disk = 0, .length = 4096, .offset = 0, .data = data},
        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_APP, .length = 7, .id = 8, .data = (const uint8_t *)"pg.dump"},
        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_GROUP, .length = 3, .id = 9, .data = (const uint8_t *)"grp"},
    };
    rc = -ENOMEM;
    if (wire_enc_records(&b, 100, z, 3, true) != 0 || (rc = wire_seed(dir, "records-lz4", 0, &b)) != 0)
        goto out;
    /* Each write compressed on its own or not: lz4, raw (bytes lz4 cannot
     * shrink), lz4 again, between a tag and ranges. */
    static uint8_t noise[1024];
    uint32_t x = 0x2545f491u;
    for (unsigned i = 0; i < sizeof noise; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise[i] = (uint8_t)x;
    }
    wire_entry_t m[] = {
        {.kind = WIRE_R_WRITE, .disk = 0, .length = 2048, .offset = 4096, .data = data},
        {.kind = WIRE_R_WRITE, .disk = 1, .length = 1024, .offset = 0, .data = noise},
        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 4, .id = 10, .data = (const uint8_t *)"t-10"},
        {.kind = WIRE_R_WRITE, .disk = 0, .length = 512, .offset = 0, .data = data + 2048},
        {.kind = WIRE_R_ZERO, .disk = 1, .length = 4096, .offset = 8192},
        {.kind = WIRE_R_FLUSH},
        {.kind = WIRE_R_SYNCED, .disk = 1},
    };
    rc = -ENOMEM;
    if (wire_enc_records(&b, 200, m, 7, true) != 0 || (rc = wire_seed(dir, "records-mixed", 0x05, &b)) != 0)
        goto out;

    wire_challenge_t c = {.server_id = "appliance-1"};
    for (unsigned i = 0; i < WIRE_NONCE_LEN; i++)
        c.nonce[i] = (uint8_t)(i * 7 + 1);
    rc = -ENOMEM;
    if (wire_enc_challenge(&b, &c) != 0 || (rc = wire_seed(dir, "challenge", 0x02, &b)) != 0)
        goto out;
    wire_welcome_t w = {.next_seq = 1, .window_bytes = 64u << 20, .max_batch_data = WIRE_MAX_BATCH_DATA,
                        .ndisks = 2, .disk_state = {WIRE_DISK_SYNCED, WIRE_DISK_NEW}};
    rc = -ENOMEM;
    if (wire_enc_welcome(&b, &w) != 0 || (rc = wire_seed(dir, "welcome", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_ack(&b, 5) != 0 || (rc = wire_seed(dir, "ack", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_tag_request(&b, WIRE_TAG_APP, 12, "before-upgrade") != 0 ||
        (rc = wire_seed(dir, "tag-request", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_stop(&b, 41, "final-41", "planned failover") != 0 || (rc = wire_seed(dir, "stop", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_resume(&b, "planned failover cancelled") != 0 || (rc = wire_seed(dir, "resume", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_error(&b, WIRE_E_SEQUENCE, "expected sequence 6, got 9") != 0 ||
        (rc = wire_seed(dir, "error", 0, &b)) != 0)
        goto out;

    /* Resync frames, and a batch with a RESYNC record and its SYNCED. */
    rc = -ENOMEM;
    wire_resync_request_t rq = {.disk = 1, .block_size = 65536, .first_block = 3};
    if (wire_enc_resync_request(&b, &rq) != 0 || (rc = wire_seed(dir, "resync-request", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_resync_ack(&b, 1, 2) != 0 || (rc = wire_seed(dir, "resync-ack", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    uint64_t sums[5] = {0x1122334455667788ull, 0, UINT64_MAX, 42, 0xfeedfacecafebeefull};
    wire_resync_sums_t rs = {.disk = 1, .flags = WIRE_SUMS_LAST, .block_size = 65536, .seq = 77, .first_block = 3,
                             .count = 5, .sums = sums};
    if (wire_enc_resync_sums(&b, &rs) != 0 || (rc = wire_seed(dir, "resync-sums", 0x03, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    wire_entry_t rr[] = {{.kind = WIRE_R_RESYNC, .disk = 0}, {.kind = WIRE_R_SYNCED, .disk = 0}};
    if (wire_enc_records(&b, 300, rr, 2, false) != 0 || (rc = wire_seed(dir, "records-resync", 0, &b)) != 0)
        goto out;

    /* Group rounds: a prepare of each kind, both answers, the decisions. */
    rc = -ENOMEM;
    wire_group_prepare_t gp = {.round = 5, .kind = WIRE_TAG_CRASH, .hold_ms = 100, .name = "grp-5"};
    if (wire_enc_group_prepare(&b, &gp) != 0 || (rc = wire_seed(dir, "group-prepare", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    wire_group_prepare_t ga = {.round = UINT64_MAX, .kind = WIRE_TAG_APP, .hold_ms = WIRE_GROUP_MAX_HOLD_MS,
                               .name = "app.consistent-round_1"};
    if (wire_enc_group_prepare(&b, &ga) != 0 || (rc = wire_seed(dir, "group-prepare-app", 0x01, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    wire_prepared_t ph = {.round = 5, .status = WIRE_PREPARED_HELD, .seq = 4711};
    if (wire_enc_prepared(&b, &ph) != 0 || (rc = wire_seed(dir, "prepared-held", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    wire_prepared_t pf = {.round = 6, .status = WIRE_PREPARED_FAILED, .reason = "the pre-script failed: exit 1"};
    if (wire_enc_prepared(&b, &pf) != 0 || (rc = wire_seed(dir, "prepared-failed", 0x02, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_group_commit(&b, 5) != 0 || (rc = wire_seed(dir, "group-commit", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_group_abort(&b, 6) != 0 || (rc = wire_seed(dir, "group-abort", 0, &b)) != 0)
        goto out;
    /* A round as the agent reads it: prepare, acks on the way, the decision. */
    rc = -ENOMEM;
    if (wire_enc_group_prepare(&b, &gp) != 0 || wire_enc_ack(&b, 4711) != 0 || wire_enc_group_commit(&b, 5) != 0 ||
        wire_enc_group_abort(&b, 7) != 0 || (rc = wire_seed(dir, "group-round", 0x06, &b)) != 0)
        goto out;

    /* Frames back to back, in pieces of up to 17 bytes. */
    rc = -ENOMEM;
    if (wire_enc_ack(&b, 6) != 0 || wire_enc_tag_request(&b, WIRE_TAG_CRASH, 13, "t13") != 0 ||
        wire_enc_stop(&b, 14, "t14", "") != 0 || wire_enc_resume(&b, "") != 0 ||
        wire_enc_stop(&b, UINT64_MAX, "again", "second stop") != 0 || (rc = wire_seed(dir, "stream", 0x04, &b)) != 0)
        goto out;
    rc = 0;

out:
    wire_buf_free(&b);
    return rc;
}

/* One fuzz_nbd_proto seed being built: the prefix naming the export, then
 * what a client sends. Too much for buf sets over. */
typedef struct nbd_seed {
    uint8_t buf[8192];
    size_t len;
    int over;
} nbd_seed_t;

static uint8_t *nbd_room(nbd_seed_t *s, size_t n)
{
    if (s->over || n > sizeof s->buf - s->len) {
        s->over = 1;
        return NULL;
    }
    uint8_t *p = s->buf + s->len;
    s->len += n;
    return p;
}

static void nbd_begin(nbd_seed_t *s, uint8_t cfg, uint16_t tflags, uint64_t size)
{
    s->len = 0;
    s->over = 0;
    uint8_t *p = nbd_room(s, FUZZ_NBD_PREFIX_LEN);
    p[0] = cfg;
    tm_put_be16(p + 1, tflags);
    tm_put_be64(p + 3, size);
}

static void nbd_opt(nbd_seed_t *s, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t *p = nbd_room(s, NBD_OPT_HDR_LEN + (size_t)len);
    if (p == NULL)
        return;
    tm_put_be64(p, NBD_IHAVEOPT);
    tm_put_be32(p + 8, opt);
    tm_put_be32(p + 12, len);
    if (len > 0)
        memcpy(p + NBD_OPT_HDR_LEN, data, len);
}

/* OPT_INFO/OPT_GO: name length, name, info count, infos. */
static void nbd_go(nbd_seed_t *s, uint32_t opt, const char *name, size_t name_len, const uint16_t *infos,
                   uint16_t ninfo)
{
    uint8_t data[4 + NBD_MAX_NAME + 2 + 16];
    if (name_len > NBD_MAX_NAME || ninfo > 8) {
        s->over = 1;
        return;
    }
    tm_put_be32(data, (uint32_t)name_len);
    memcpy(data + 4, name, name_len);
    tm_put_be16(data + 4 + name_len, ninfo);
    for (uint16_t i = 0; i < ninfo; i++)
        tm_put_be16(data + 4 + name_len + 2 + 2 * i, infos[i]);
    nbd_opt(s, opt, data, (uint32_t)(4 + name_len + 2 + 2 * (size_t)ninfo));
}

/* A request; a WRITE's payload follows (a pattern of length bytes). */
static void nbd_req(nbd_seed_t *s, uint16_t flags, uint16_t type, uint64_t handle, uint64_t offset, uint32_t length)
{
    uint32_t payload = type == NBD_CMD_WRITE ? length : 0;
    uint8_t *p = nbd_room(s, NBD_REQ_HDR_LEN + (size_t)payload);
    if (p == NULL)
        return;
    tm_put_be32(p, NBD_REQUEST_MAGIC);
    tm_put_be16(p + 4, flags);
    tm_put_be16(p + 6, type);
    tm_put_be64(p + 8, handle);
    tm_put_be64(p + 16, offset);
    tm_put_be32(p + 24, length);
    for (uint32_t i = 0; i < payload; i++)
        p[NBD_REQ_HDR_LEN + i] = (uint8_t)(i * 13 + 5);
}

static int nbd_write_seed(const char *dir, const char *name, nbd_seed_t *s)
{
    return s->over ? -ENOSPC : write_file(dir, "fuzz_nbd_proto", name, s->buf, s->len);
}

static int gen_nbd(const char *dir)
{
    static nbd_seed_t s;
    const uint16_t name_bs[] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE};
    const uint16_t export_only[] = {NBD_INFO_EXPORT};
    const uint8_t all_ops = FUZZ_NBD_WRITE | FUZZ_NBD_FLUSH | FUZZ_NBD_TRIM | FUZZ_NBD_ZERO;
    int rc;

    /* A modern client on a writable export: GO, then one of each command. */
    uint64_t mib = 1u << 20;
    nbd_begin(&s, all_ops | FUZZ_NBD_MULTI, 0, mib);
    nbd_go(&s, NBD_OPT_GO, "disk0", 5, name_bs, 2);
    nbd_req(&s, 0, NBD_CMD_READ, 1, 0, 4096);
    nbd_req(&s, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 2, 4096, 512);
    nbd_req(&s, 0, NBD_CMD_FLUSH, 3, 0, 0);
    nbd_req(&s, 0, NBD_CMD_TRIM, 4, 65536, 8192);
    nbd_req(&s, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, NBD_CMD_WRITE_ZEROES, 5, mib - 4096, 4096);
    nbd_req(&s, 0, NBD_CMD_DISC, 6, 0, 0);
    if ((rc = nbd_write_seed(dir, "go-read-write", &s)) != 0)
        return rc;

    /* What nbdinfo and qemu try first, on a read-only export: INFO, LIST,
     * refused options, then GO; reads at the end, refused writes. */
    uint64_t gib10 = 10ull << 30;
    nbd_begin(&s, FUZZ_NBD_WRITE | FUZZ_NBD_FLUSH | FUZZ_NBD_RO, 0, gib10);
    nbd_go(&s, NBD_OPT_INFO, "", 0, NULL, 0);
    nbd_opt(&s, NBD_OPT_LIST, NULL, 0);
    nbd_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    nbd_opt(&s, NBD_OPT_SET_META_CONTEXT, "\0\0\0\3sda\0\0\0\1\0\0\0\17base:allocation", 30);
    nbd_go(&s, NBD_OPT_GO, "sda", 3, export_only, 1);
    nbd_req(&s, 0, NBD_CMD_READ, 1, gib10 - 512, 512);
    nbd_req(&s, 0, NBD_CMD_READ, 2, gib10, 512);
    nbd_req(&s, 0, NBD_CMD_WRITE, 3, 0, 512);
    nbd_req(&s, 0, NBD_CMD_TRIM, 4, 0, 4096);
    nbd_req(&s, 0, NBD_CMD_FLUSH, 5, 0, 0);
    nbd_req(&s, 0, NBD_CMD_DISC, 6, 0, 0);
    if ((rc = nbd_write_seed(dir, "info-list-go-read-only", &s)) != 0)
        return rc;

    /* An old client: EXPORT_NAME, then writes at and past the end, an
     * oversize read, commands this server does not do. */
    uint64_t k64 = 64u << 10;
    nbd_begin(&s, FUZZ_NBD_WRITE | FUZZ_NBD_FLUSH, 0, k64);
    nbd_opt(&s, NBD_OPT_EXPORT_NAME, "exp", 3);
    nbd_req(&s, 0, NBD_CMD_WRITE, 1, k64 - 1024, 1024);
    nbd_req(&s, 0, NBD_CMD_WRITE, 2, k64 - 512, 1024);
    nbd_req(&s, 0, NBD_CMD_READ, 3, 0, NBD_MAX_REQUEST + 1);
    nbd_req(&s, 0, NBD_CMD_CACHE, 4, 0, 4096);
    nbd_req(&s, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 5, 0, 4096);
    nbd_req(&s, 0, NBD_CMD_WRITE_ZEROES, 6, 0, 4096);
    nbd_req(&s, 0, NBD_CMD_DISC, 7, 0, 0);
    if ((rc = nbd_write_seed(dir, "export-name", &s)) != 0)
        return rc;

    /* Malformed GOs (count short, NUL in the name, name past the end),
     * then ABORT. */
    nbd_begin(&s, all_ops, 0, mib);
    static const uint8_t go_short[] = {0, 0, 0, 2, 'a', 'b', 0, 2, 0, 1};
    static const uint8_t go_nul[] = {0, 0, 0, 3, 'a', 0, 'b', 0, 0};
    static const uint8_t go_past[] = {0xff, 0xff, 0xff, 0xfa, 'a', 'b', 0, 0};
    nbd_opt(&s, NBD_OPT_GO, go_short, sizeof go_short);
    nbd_opt(&s, NBD_OPT_INFO, go_nul, sizeof go_nul);
    nbd_opt(&s, NBD_OPT_GO, go_past, sizeof go_past);
    nbd_opt(&s, NBD_OPT_ABORT, NULL, 0);
    if ((rc = nbd_write_seed(dir, "go-malformed-abort", &s)) != 0)
        return rc;

    /* The longest name there may be, then a read. */
    static char longest[NBD_MAX_NAME];
    memset(longest, 'n', sizeof longest);
    nbd_begin(&s, FUZZ_NBD_RO, 0, mib);
    nbd_go(&s, NBD_OPT_GO, longest, sizeof longest, name_bs, 2);
    nbd_req(&s, 0, NBD_CMD_READ, 1, 0, 512);
    if ((rc = nbd_write_seed(dir, "go-longest-name", &s)) != 0)
        return rc;

    /* An option over NBD_MAX_OPTION: the server answers and closes. */
    nbd_begin(&s, all_ops, 0, mib);
    uint8_t *p = nbd_room(&s, NBD_OPT_HDR_LEN);
    if (p == NULL)
        return -ENOSPC;
    tm_put_be64(p, NBD_IHAVEOPT);
    tm_put_be32(p + 8, NBD_OPT_INFO);
    tm_put_be32(p + 12, NBD_MAX_OPTION + 1);
    if ((rc = nbd_write_seed(dir, "option-too-big", &s)) != 0)
        return rc;

    /* Straight to requests, judged with raw flags (DF advertised, which this
     * server never does): refused flags, a wrapping range, a 4 GiB trim on a
     * 2^63-byte export, FLUSH with an offset, DISC with a flag. */
    uint16_t raw = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                   NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF;
    nbd_begin(&s, FUZZ_NBD_TRANSMISSION | FUZZ_NBD_RAW_TFLAGS, raw, 1ull << 63);
    nbd_req(&s, NBD_CMD_FLAG_DF, NBD_CMD_READ, 1, 0, 512);
    nbd_req(&s, 0, NBD_CMD_READ, 2, UINT64_MAX - 511, 1024);
    nbd_req(&s, NBD_CMD_FLAG_FUA, NBD_CMD_TRIM, 3, 0, UINT32_MAX);
    nbd_req(&s, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 4, 0, 4096);
    nbd_req(&s, 0, NBD_CMD_FLUSH, 5, 1, 0);
    nbd_req(&s, NBD_CMD_FLAG_FUA, NBD_CMD_DISC, 6, 0, 0);
    if ((rc = nbd_write_seed(dir, "requests-raw-flags", &s)) != 0)
        return rc;
    return 0;
}

/* fuzz_http_request: a config byte (bits as in fuzz_http_request.c), then
 * what an orchestrator or a broken client sends. The token is the one that
 * target's server checks. */
#define HTTP_TOKEN "f00df00df00df00df00df00df00df00df00df00df00df00df00df00df00df00d"
#define HTTP_AUTH "Authorization: Bearer " HTTP_TOKEN "\r\n"

static int http_seed(const char *dir, const char *name, uint8_t cfg, const char *text)
{
    static uint8_t buf[4096];
    size_t len = strlen(text);
    if (len + 1 > sizeof buf)
        return -ENOSPC;
    buf[0] = cfg;
    memcpy(buf + 1, text, len);
    return write_file(dir, "fuzz_http_request", name, buf, len + 1);
}

static int gen_http(const char *dir)
{
    static const struct {
        const char *name;
        uint8_t cfg; /* bits 0-3: piece size; 0x10 reset; 0x20 newest first; 0x40 no EOF */
        const char *text;
    } seeds[] = {
        {"health", 0x00, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:7780\r\nAccept: */*\r\n\r\n"},
        {"point-selector", 0x00,
         "GET /v1/machines/web1/points/%402026-11-27T10%3A00%3A00Z?kind=app&since=a+b&limit=10 HTTP/1.1\r\n"
         "Host: x\r\n" HTTP_AUTH "\r\n"
         "GET /v1/machines/web1/points/latest HTTP/1.1\r\n" HTTP_AUTH "\r\n"},
        {"pipeline-held", 0x23,
         "POST /v1/machines/web1/tags HTTP/1.1\r\n" HTTP_AUTH
         "Content-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"name\": \"before-upgrade\"}"
         "GET /a/one HTTP/1.1\r\n\r\n"
         "GET /v1/health HTTP/1.1\r\n\r\n"
         "PUT /a/two HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
         "GET /a/three HTTP/1.1\r\n\r\n"},
        {"chunked-expect", 0x01,
         "POST /v1/machines/web1/tags HTTP/1.1\r\n" HTTP_AUTH
         "Content-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
         "Expect: 100-continue\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nX-Trailer: t\r\n\r\n"},
        {"errors", 0x00,
         "GET /nothing HTTP/1.1\r\n\r\n"
         "DELETE /v1/health HTTP/1.1\r\n\r\n"
         "GET /v1/machines/web1/points/latest HTTP/1.1\r\n\r\n"
         "GET /v1/machines/web1/points/latest HTTP/1.1\r\nAuthorization: Bearer 0123\r\n\r\n"
         "GET /v1/machines/web%zz/points/latest HTTP/1.1\r\n" HTTP_AUTH "\r\n"
         "PUT /a/x HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\n  oops}"
         "GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
         "PUT /a/x HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"},
        {"reset-held", 0x10,
         "POST /v1/machines/web1/tags HTTP/1.1\r\n" HTTP_AUTH
         "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
         "GET /a/1 HTTP/1.1\r\n\r\nGET /v1/health HTTP/1.1\r\nContent-Le"},
        {"malformed", 0x00, "GARBAGE\r\n\r\n"},
        {"close", 0x40, "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n"},
        {"too-large", 0x00,
         "POST /v1/machines/web1/tags HTTP/1.1\r\n" HTTP_AUTH
         "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{}"},
        {"head-and-version", 0x00, "HEAD /v1/health HTTP/1.1\r\n\r\nGET /v1/health HTTP/2.0\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        int rc = http_seed(dir, seeds[i].name, seeds[i].cfg, seeds[i].text);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    if (mkdir(argv[1], 0755) != 0 && errno != EEXIST) {
        perror(argv[1]);
        return 1;
    }
    int rc = gen_records(argv[1]);
    if (rc == 0)
        rc = gen_headers(argv[1]);
    if (rc == 0)
        rc = gen_wire(argv[1]);
    if (rc == 0)
        rc = gen_nbd(argv[1]);
    if (rc == 0)
        rc = gen_http(argv[1]);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], tm_strerror(rc));
        return 1;
    }
    return 0;
}
