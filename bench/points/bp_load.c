/*
 * The processing workload: writes of one size at random offsets of one
 * disk, data about half compressible, in batches of a realistic size.
 *
 * Encoding (lz4 per write, XXH3 per write) is the agent's work and costs
 * more CPU than the journal: done inside the timed feed it would measure the
 * encoder. So a pool of distinct batches (about 32 MiB encoded) is encoded
 * up front, and each batch handed out rewrites the two fields of the
 * RECORDS body that must change, both documented in docs/agent-protocol.md:
 * first_seq (the header's first field) and each entry's offset. The hashes
 * cover only the data, so the batches stay valid.
 */
#include "bench/points/bp.h"

#include <errno.h>
#include <string.h>

#include "base/endian.h"
#include "base/mem.h"
#include "wire/msg.h"
#include "wire/wire.h"

/* Raw data the pool is cut from at most; about half that once encoded. */
#define BP_POOL_RAW (64u << 20)
/* Where the fields sit in a RECORDS body (wire_enc_records). */
#define BP_ENTRY_OFFSET_AT 16u

typedef struct bp_enc {
    uint8_t *body;
    size_t len;
} bp_enc_t;

struct bp_pool {
    bp_pool_cfg_t cfg;
    bp_enc_t *b;
    size_t n;
    size_t next;        /* the pool batch handed out next */
    uint64_t produced;  /* write bytes handed out */
    uint64_t rng;
};

static uint64_t bp__rand(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

/* Half of every 4 KiB random, half a short repeated phrase: lz4 keeps
 * about 50%, like mixed file-system data. */
static void bp__fill_half(uint8_t *buf, size_t len, uint64_t seed)
{
    for (size_t at = 0; at < len; at += 4096) {
        size_t n = len - at < 4096 ? len - at : 4096;
        size_t r = n / 2;
        bj_fill_random(buf + at, r, seed * 0x9e3779b97f4a7c15ull + at + 1);
        for (size_t i = r; i < n; i++)
            buf[at + i] = (uint8_t)("tidemark-bench-points-"[(i + seed) % 22]);
    }
}

void bp_pool_free(bp_pool_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        tm_free(p->b[i].body);
    tm_free(p->b);
    tm_free(p);
}

int bp_pool_new(const bp_pool_cfg_t *cfg, bp_pool_t **out)
{
    int rc = -ENOMEM;
    uint8_t *data = NULL;
    wire_entry_t *e = NULL;
    wire_buf_t wb = {0};
    bp_pool_t *p = tm_calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->rng = cfg->seed | 1;
    uint64_t per = (uint64_t)cfg->wsize * cfg->per_batch;
    uint64_t raw = cfg->total < BP_POOL_RAW ? cfg->total : BP_POOL_RAW;
    p->n = (size_t)((raw + per - 1) / per);
    if (p->n == 0)
        p->n = 1;
    p->b = tm_calloc(p->n, sizeof *p->b);
    data = tm_malloc((size_t)per);
    e = tm_calloc(cfg->per_batch, sizeof *e);
    if (!p->b || !data || !e)
        goto out;
    for (size_t k = 0; k < p->n; k++) {
        memset(e, 0, cfg->per_batch * sizeof *e);
        for (unsigned i = 0; i < cfg->per_batch; i++) {
            uint8_t *w = data + (size_t)i * cfg->wsize;
            bp__fill_half(w, cfg->wsize, cfg->seed + k * cfg->per_batch + i);
            e[i].kind = WIRE_R_WRITE;
            e[i].length = cfg->wsize;
            e[i].data = w;
        }
        wire_buf_reset(&wb);
        if (wire_enc_records(&wb, 1, e, (uint16_t)cfg->per_batch, true) != 0)
            goto out;
        p->b[k].len = wb.len - WIRE_HDR_LEN;
        p->b[k].body = tm_malloc(p->b[k].len);
        if (!p->b[k].body)
            goto out;
        memcpy(p->b[k].body, wb.data + WIRE_HDR_LEN, p->b[k].len);
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    wire_buf_free(&wb);
    tm_free(e);
    tm_free(data);
    bp_pool_free(p);
    return rc;
}

int bp_pool_next(void *arg, uint64_t first_seq, bp_batch_t *out)
{
    bp_pool_t *p = arg;
    uint64_t per = (uint64_t)p->cfg.wsize * p->cfg.per_batch;
    if (p->produced >= p->cfg.total)
        return 1;
    bp_enc_t *b = &p->b[p->next];
    p->next = (p->next + 1) % p->n;
    /* The journal copies the payload inside jnl_append, so rewriting a
     * pool batch for its next use never races with the previous one. */
    tm_put64(b->body, first_seq);
    uint64_t slots = p->cfg.disk_size / p->cfg.wsize;
    for (unsigned i = 0; i < p->cfg.per_batch; i++) {
        uint64_t off = bp__rand(&p->rng) % slots * p->cfg.wsize;
        tm_put64(b->body + WIRE_RECORDS_HDR_LEN + (size_t)i * WIRE_ENTRY_LEN + BP_ENTRY_OFFSET_AT, off);
    }
    p->produced += per;
    out->body = b->body;
    out->len = b->len;
    out->count = (uint16_t)p->cfg.per_batch;
    out->raw_bytes = per;
    return 0;
}
