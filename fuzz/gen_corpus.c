/*
 * Writes the fuzz targets' seed corpus: a few valid records and segment
 * headers, and the end-of-log shapes recovery meets (zeroed space, a torn
 * record, a stale salt, an unknown version); and one valid agent protocol
 * frame of each type. The output is committed under fuzz/corpus/; rerun
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

#include "base/err.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "journal/format.h"
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

    wire_challenge_t c = {.server_id = "appliance-1"};
    for (unsigned i = 0; i < WIRE_NONCE_LEN; i++)
        c.nonce[i] = (uint8_t)(i * 7 + 1);
    rc = -ENOMEM;
    if (wire_enc_challenge(&b, &c) != 0 || (rc = wire_seed(dir, "challenge", 0x02, &b)) != 0)
        goto out;
    wire_welcome_t w = {.next_seq = 1, .window_bytes = 64u << 20, .max_batch_data = WIRE_MAX_BATCH_DATA};
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
    if (wire_enc_stop(&b, "planned failover") != 0 || (rc = wire_seed(dir, "stop", 0, &b)) != 0)
        goto out;
    rc = -ENOMEM;
    if (wire_enc_error(&b, WIRE_E_SEQUENCE, "expected sequence 6, got 9") != 0 ||
        (rc = wire_seed(dir, "error", 0, &b)) != 0)
        goto out;

    /* Frames back to back, in pieces of up to 17 bytes. */
    rc = -ENOMEM;
    if (wire_enc_ack(&b, 6) != 0 || wire_enc_tag_request(&b, WIRE_TAG_CRASH, 13, "t13") != 0 ||
        wire_enc_stop(&b, "") != 0 || (rc = wire_seed(dir, "stream", 0x04, &b)) != 0)
        goto out;
    rc = 0;

out:
    wire_buf_free(&b);
    return rc;
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
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], tm_strerror(rc));
        return 1;
    }
    return 0;
}
