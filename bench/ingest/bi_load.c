/*
 * The load generator: many agent sessions in one process, on one libuv
 * loop. Hundreds of `tidemark agent` processes would cost the two cores
 * more than the server they measure, and agent/client.c runs one session
 * per stream with a copy of every write, so this speaks the protocol
 * itself: HELLO -> CHALLENGE -> AUTH (agent_auth_mac) -> WELCOME, then
 * RECORDS frames within a window of unacknowledged bytes, counting ACKs.
 *
 * Frames are built without copying the data: each one is a small header
 * (frame header, records header, entries) plus a pointer into a shared pool
 * of random bytes, whose per-write XXH3 hashes are computed once. Only the
 * frame checksum is computed per frame. bi_load_new checks once that such a
 * frame is byte for byte what wire_enc_records (compress off) makes of the
 * same writes. The data is random and sent raw (codec 0): lz4 could not
 * shrink it, and the agent would only spend CPU finding that out.
 *
 * A frame's latency runs from just before its uv_write to the ACK that
 * covers its last sequence.
 */
#include "bench/ingest/bi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "agent/client.h"
#include "base/addr.h"
#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "wire/msg.h"

/* Frame latencies kept per run at most; later frames still count. */
#define BI_MAX_LAT (4u << 20)
#define BI_READ_BUF (64u << 10)

typedef enum { BI_A_CONNECTING, BI_A_HELLO, BI_A_AUTH, BI_A_STREAM, BI_A_DEAD } bi_astate_t;

/* A frame sent and not acked yet. */
typedef struct bi_flight {
    uint64_t last_seq;
    uint64_t send_ns;
} bi_flight_t;

typedef struct bi_agent {
    uv_tcp_t tcp;
    uv_connect_t conn_req;
    struct bi_load *L;
    unsigned idx; /* machine index, 0-based */
    char name[WIRE_MAX_NAME + 1];
    const uint8_t *secret;
    bi_astate_t state;
    bool busy;
    bool open; /* tcp initialised: close it at the end */
    wire_decoder_t dec;
    uint32_t window;
    uint64_t next_seq; /* of the next record sent */
    uint64_t acked_seq;
    uint64_t inflight_raw;
    uint64_t frames_sent;
    uint64_t next_off;
    bi_flight_t *ring; /* frames in flight, oldest first */
    unsigned ring_cap, ring_head, ring_n;
} bi_agent_t;

/* One RECORDS frame on its way out: its headers; the data is the pool's. */
typedef struct bi_send {
    uv_write_t req;
    struct bi_send *next_free;
    uint8_t hdr[]; /* frame header + records header + entries */
} bi_send_t;

/* A small frame (hello, auth): a copy of its bytes. */
typedef struct bi_small {
    uv_write_t req;
    size_t len;
    uint8_t data[];
} bi_small_t;

struct bi_load {
    uv_loop_t loop;
    uv_timer_t timer;  /* deadlines: handshakes, end of streaming, drain */
    uv_timer_t sampler;
    bi_load_cfg_t cfg;
    struct sockaddr_storage addr;
    const bj_pool_t *pool;
    /* write slices of the pool: slice i is pool[i*record ..), with its hash */
    uint64_t *hashes;
    size_t nslices;
    size_t hdr_len;   /* bytes of bi_send_t.hdr */
    uint32_t frame_raw; /* data bytes per frame */
    XXH3_state_t *xxh;
    bi_send_t *free_sends;
    uint8_t *readbuf;
    bool readbuf_busy;
    bi_agent_t *agents; /* cfg.max_agents of them */
    size_t nagents;
    /* phase bookkeeping */
    int error;           /* first failure */
    unsigned more_failures; /* sessions that failed after it */
    unsigned want_welcome; /* connect phase: sessions still to be welcomed */
    unsigned pending_hs;   /* in their handshake now */
    const bi_machines_t *m;
    unsigned next_connect, end_connect;
    bool connect_busy;
    bool streaming;      /* busy sessions send */
    bool draining;       /* time is up: waiting for acks */
    uint64_t budget, issued;
    uint64_t inflight_frames;
    uint64_t t_last_ack;
    bi_sample_cb sample_cb;
    void *sample_arg;
    /* results of the current run */
    uint64_t acked_frames, acked_writes, acked_bytes, wire_bytes;
    uint64_t *lat;
    size_t lat_cap, lat_n;
    bool closing;
};

static void bi__fail(bi_load_t *L, int rc)
{
    if (L->error == 0)
        L->error = rc ? rc : -EIO;
    uv_stop(&L->loop);
}

static void bi__agent_fail(bi_agent_t *a, int rc, const char *fmt, const char *detail)
{
    bi_load_t *L = a->L;
    if (a->state == BI_A_DEAD)
        return;
    a->state = BI_A_DEAD;
    /* The first failure says why; the ones it causes are only counted. */
    if (!L->closing && L->error == 0) {
        fprintf(stderr, "bench_ingest: agent %s: ", a->name);
        fprintf(stderr, fmt, detail);
        fputc('\n', stderr);
    } else if (!L->closing) {
        L->more_failures++;
    }
    bi__fail(L, rc);
}

/* ---- frames ------------------------------------------------------------- */

static bi_send_t *bi__send_get(bi_load_t *L)
{
    bi_send_t *s = L->free_sends;
    if (s) {
        L->free_sends = s->next_free;
        return s;
    }
    return tm_malloc(sizeof *s + L->hdr_len);
}

static void bi__send_put(bi_load_t *L, bi_send_t *s)
{
    s->next_free = L->free_sends;
    L->free_sends = s;
}

/*
 * Fill hdr for a frame of per_frame writes from slices [slice, slice + n),
 * at disk offset off, first sequence seq; returns the data it points at.
 * Layout: wire/wire.h (frame header) and wire/msg.h (RECORDS body).
 */
static const uint8_t *bi__build(bi_load_t *L, uint8_t *hdr, size_t slice, uint64_t off, uint64_t seq)
{
    const unsigned n = L->cfg.per_frame;
    const uint32_t rec = (uint32_t)L->cfg.record;
    uint32_t body_len = (uint32_t)(L->hdr_len - WIRE_HDR_LEN) + L->frame_raw;
    const uint8_t *data = L->pool->base + slice * rec;

    tm_put16(hdr, WIRE_T_RECORDS);
    tm_put16(hdr + 2, 0);
    tm_put32(hdr + 4, body_len);
    uint8_t *p = hdr + WIRE_HDR_LEN;
    tm_put64(p, seq);
    tm_put16(p + 8, (uint16_t)n);
    tm_put16(p + 10, 0);
    tm_put32(p + 12, L->frame_raw);
    tm_put32(p + 16, L->frame_raw); /* stored = raw: no compression */
    p += WIRE_RECORDS_HDR_LEN;
    for (unsigned i = 0; i < n; i++, p += WIRE_ENTRY_LEN) {
        p[0] = WIRE_R_WRITE;
        p[1] = 0; /* tag kind */
        p[2] = 0; /* codec: raw */
        p[3] = 0;
        tm_put16(p + 4, 0); /* disk 0 */
        tm_put16(p + 6, 0);
        tm_put32(p + 8, rec);
        tm_put32(p + 12, rec);
        tm_put64(p + 16, off + (uint64_t)i * rec);
        tm_put64(p + 24, L->hashes[slice + i]);
        tm_put64(p + 32, 0); /* id: tags only */
    }
    XXH3_64bits_reset(L->xxh);
    XXH3_64bits_update(L->xxh, hdr, 8);
    XXH3_64bits_update(L->xxh, hdr + WIRE_HDR_LEN, L->hdr_len - WIRE_HDR_LEN);
    XXH3_64bits_update(L->xxh, data, L->frame_raw);
    tm_put64(hdr + 8, XXH3_64bits_digest(L->xxh));
    return data;
}

/* Our frame against the codec's, once: a mismatch would measure a server
 * that refuses every batch, or a protocol that is not the real one. */
static int bi__selfcheck(bi_load_t *L)
{
    wire_entry_t *e = tm_calloc(L->cfg.per_frame, sizeof *e);
    uint8_t *mine = tm_malloc(L->hdr_len + L->frame_raw);
    wire_buf_t b = {0};
    int rc = -ENOMEM;
    if (!e || !mine)
        goto out;
    size_t slice = L->cfg.per_frame; /* not the first: offsets inside the pool count */
    uint64_t off = 12345u * WIRE_SECTOR;
    for (unsigned i = 0; i < L->cfg.per_frame; i++) {
        e[i].kind = WIRE_R_WRITE;
        e[i].length = (uint32_t)L->cfg.record;
        e[i].offset = off + (uint64_t)i * L->cfg.record;
        e[i].data = L->pool->base + (slice + i) * L->cfg.record;
    }
    if (wire_enc_records(&b, 77, e, (uint16_t)L->cfg.per_frame, false) != 0 || b.oom)
        goto out;
    const uint8_t *data = bi__build(L, mine, slice, off, 77);
    memcpy(mine + L->hdr_len, data, L->frame_raw);
    if (b.len != L->hdr_len + L->frame_raw || memcmp(b.data, mine, b.len) != 0) {
        fprintf(stderr, "bench_ingest: bug: the frames built here differ from wire_enc_records'\n");
        rc = TM_EINVAL;
        goto out;
    }
    rc = 0;
out:
    wire_buf_free(&b);
    tm_free(mine);
    tm_free(e);
    return rc;
}

/* ---- sending -------------------------------------------------------------- */

static void bi__small_cb(uv_write_t *req, int status)
{
    bi_small_t *w = (bi_small_t *)req;
    bi_agent_t *a = req->handle->data;
    tm_free(w);
    if (status < 0 && !a->L->closing)
        bi__agent_fail(a, status, "write: %s", uv_strerror(status));
}

static void bi__send_small(bi_agent_t *a, const wire_buf_t *b)
{
    bi_small_t *w = b->oom ? NULL : tm_malloc(sizeof *w + b->len);
    if (!w) {
        bi__agent_fail(a, -ENOMEM, "%s", "out of memory");
        return;
    }
    memcpy(w->data, b->data, b->len);
    uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)b->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&a->tcp, &ub, 1, bi__small_cb);
    if (rc) {
        tm_free(w);
        bi__agent_fail(a, rc, "write: %s", uv_strerror(rc));
    }
}

static void bi__frame_cb(uv_write_t *req, int status)
{
    bi_send_t *s = (bi_send_t *)req;
    bi_agent_t *a = req->handle->data;
    bi__send_put(a->L, s);
    if (status < 0 && !a->L->closing)
        bi__agent_fail(a, status, "write: %s", uv_strerror(status));
}

/* Send frames while the window, the ring and the byte budget allow. */
static void bi__pump(bi_agent_t *a)
{
    bi_load_t *L = a->L;
    const unsigned n = L->cfg.per_frame;
    while (L->streaming && a->busy && a->state == BI_A_STREAM && a->inflight_raw + L->frame_raw <= a->window &&
           a->ring_n < a->ring_cap && L->issued + L->frame_raw <= L->budget) {
        bi_send_t *s = bi__send_get(L);
        if (!s) {
            bi__agent_fail(a, -ENOMEM, "%s", "out of memory");
            return;
        }
        /* A different run of slices per frame and agent; never wraps (nslices % n == 0). */
        size_t slice = (size_t)(((uint64_t)a->idx * 131u + a->frames_sent) * n % L->nslices);
        if (a->next_off + L->frame_raw > BI_DISK_SIZE)
            a->next_off = 0;
        const uint8_t *data = bi__build(L, s->hdr, slice, a->next_off, a->next_seq);
        uv_buf_t bufs[2] = {uv_buf_init((char *)s->hdr, (unsigned)L->hdr_len),
                            uv_buf_init((char *)data, L->frame_raw)};
        uint64_t now = tm_mono_ns();
        int rc = uv_write(&s->req, (uv_stream_t *)&a->tcp, bufs, 2, bi__frame_cb);
        if (rc) {
            bi__send_put(L, s);
            bi__agent_fail(a, rc, "write: %s", uv_strerror(rc));
            return;
        }
        bi_flight_t *f = &a->ring[(a->ring_head + a->ring_n) % a->ring_cap];
        a->ring_n++;
        f->send_ns = now;
        f->last_seq = a->next_seq + n - 1;
        a->next_seq += n;
        a->next_off += L->frame_raw;
        a->inflight_raw += L->frame_raw;
        a->frames_sent++;
        L->issued += L->frame_raw;
        L->inflight_frames++;
        L->wire_bytes += L->hdr_len + L->frame_raw;
    }
}

/* ---- receiving -------------------------------------------------------------- */

static void bi__connect_next(bi_load_t *L);

static void bi__on_ack(bi_agent_t *a, uint64_t durable)
{
    bi_load_t *L = a->L;
    if (durable < a->acked_seq || durable >= a->next_seq) {
        char why[96];
        snprintf(why, sizeof why, "%" PRIu64 " (acked %" PRIu64 ", next %" PRIu64 ")", durable, a->acked_seq,
                 a->next_seq);
        bi__agent_fail(a, TM_EINVAL, "ACK out of range: %s", why);
        return;
    }
    a->acked_seq = durable;
    uint64_t now = tm_mono_ns();
    while (a->ring_n > 0 && a->ring[a->ring_head].last_seq <= durable) {
        bi_flight_t *f = &a->ring[a->ring_head];
        if (L->lat_n < L->lat_cap)
            L->lat[L->lat_n] = now - f->send_ns;
        L->lat_n++;
        a->ring_head = (a->ring_head + 1) % a->ring_cap;
        a->ring_n--;
        a->inflight_raw -= L->frame_raw;
        L->acked_frames++;
        L->acked_writes += L->cfg.per_frame;
        L->acked_bytes += L->frame_raw;
        L->inflight_frames--;
        L->t_last_ack = now;
    }
    bi__pump(a);
    /* Done when time is up, or the byte budget is spent, and nothing is in flight. */
    if (L->inflight_frames == 0 && (L->draining || L->issued + L->frame_raw > L->budget)) {
        L->streaming = false;
        L->draining = true;
        uv_stop(&L->loop);
    }
}

static void bi__on_frame(bi_agent_t *a)
{
    bi_load_t *L = a->L;
    const wire_decoder_t *d = &a->dec;
    char reason[160];
    int rc = 0;

    switch (d->hdr.type) {
    case WIRE_T_CHALLENGE: {
        wire_challenge_t ch;
        uint8_t mac[WIRE_MAC_LEN];
        wire_buf_t b = {0};
        if (a->state != BI_A_HELLO) {
            bi__agent_fail(a, TM_EINVAL, "%s", "CHALLENGE out of turn");
            return;
        }
        rc = wire_dec_challenge(d->body, d->hdr.body_len, &ch, reason, sizeof reason);
        if (rc == 0)
            rc = agent_auth_mac(a->secret, ch.nonce, a->name, mac);
        if (rc == 0 && wire_enc_auth(&b, mac) != 0)
            rc = -ENOMEM;
        if (rc == 0) {
            a->state = BI_A_AUTH;
            bi__send_small(a, &b);
        }
        wire_buf_free(&b);
        if (rc)
            bi__agent_fail(a, TM_EINVAL, "bad CHALLENGE: %s", reason);
        return;
    }
    case WIRE_T_WELCOME: {
        wire_welcome_t w;
        if (a->state != BI_A_AUTH) {
            bi__agent_fail(a, TM_EINVAL, "%s", "WELCOME out of turn");
            return;
        }
        if (wire_dec_welcome(d->body, d->hdr.body_len, &w, reason, sizeof reason) != 0) {
            bi__agent_fail(a, TM_EINVAL, "bad WELCOME: %s", reason);
            return;
        }
        if (w.max_batch_data < L->frame_raw || w.window_bytes < L->frame_raw) {
            snprintf(reason, sizeof reason, "window %u, max batch %u; frames here carry %u", w.window_bytes,
                     w.max_batch_data, L->frame_raw);
            bi__agent_fail(a, TM_EINVAL, "the server's limits are too small: %s", reason);
            return;
        }
        a->window = L->cfg.window < w.window_bytes ? L->cfg.window : w.window_bytes;
        a->next_seq = w.next_seq;
        a->acked_seq = w.next_seq - 1;
        a->state = BI_A_STREAM;
        L->pending_hs--;
        if (L->want_welcome && --L->want_welcome == 0)
            uv_stop(&L->loop);
        bi__connect_next(L);
        return;
    }
    case WIRE_T_ACK: {
        uint64_t seq;
        if (a->state != BI_A_STREAM || wire_dec_ack(d->body, d->hdr.body_len, &seq, reason, sizeof reason) != 0) {
            bi__agent_fail(a, TM_EINVAL, "%s", "bad or early ACK");
            return;
        }
        bi__on_ack(a, seq);
        return;
    }
    case WIRE_T_ERROR: {
        wire_error_t e;
        char what[WIRE_MAX_TEXT + 64];
        if (wire_dec_error(d->body, d->hdr.body_len, &e, reason, sizeof reason) != 0) {
            e.code = 0;
            snprintf(e.text, sizeof e.text, "(undecodable: %s)", reason);
        }
        snprintf(what, sizeof what, "%s: %s", wire_err_name(e.code), e.text);
        bi__agent_fail(a, TM_EINVAL, "the server sent ERROR %s", what);
        return;
    }
    default:
        snprintf(reason, sizeof reason, "0x%x", d->hdr.type);
        bi__agent_fail(a, TM_EINVAL, "unexpected frame type %s", reason);
        return;
    }
}

static void bi__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bi_agent_t *a = h->data;
    bi_load_t *L = a->L;
    /* libuv calls alloc and read back to back on one thread: one buffer serves all. */
    if (L->readbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    L->readbuf_busy = true;
    *buf = uv_buf_init((char *)L->readbuf, BI_READ_BUF);
}

static void bi__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    bi_agent_t *a = st->data;
    bi_load_t *L = a->L;
    if (buf->base == (char *)L->readbuf)
        L->readbuf_busy = false;
    if (nread == 0 || a->state == BI_A_DEAD)
        return;
    if (nread < 0) {
        bi__agent_fail(a, (int)nread, "the server closed the connection: %s", uv_strerror((int)nread));
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    while (left > 0 && a->state != BI_A_DEAD) {
        size_t used = 0;
        wire_status_t ws = wire_decode(&a->dec, p, left, &used);
        p += used;
        left -= used;
        if (ws == WIRE_BAD) {
            bi__agent_fail(a, TM_EINVAL, "bad frame from the server: %s", a->dec.reason);
            return;
        }
        if (ws == WIRE_FRAME)
            bi__on_frame(a);
        else if (used == 0)
            break;
    }
}

/* ---- connecting ---------------------------------------------------------------- */

static void bi__connect_cb(uv_connect_t *req, int status)
{
    bi_agent_t *a = req->data;
    if (status < 0) {
        bi__agent_fail(a, status, "connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&a->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&a->tcp, bi__alloc_cb, bi__read_cb);
    if (rc) {
        bi__agent_fail(a, rc, "read: %s", uv_strerror(rc));
        return;
    }
    wire_hello_t h;
    memset(&h, 0, sizeof h);
    h.version = WIRE_VERSION;
    h.ndisks = 1;
    snprintf(h.machine, sizeof h.machine, "%s", a->name);
    snprintf(h.agent_version, sizeof h.agent_version, "bench_ingest");
    snprintf(h.disks[0].name, sizeof h.disks[0].name, "%s", BI_DISK_NAME);
    h.disks[0].size = BI_DISK_SIZE;
    wire_buf_t b = {0};
    if (wire_enc_hello(&b, &h) != 0) {
        wire_buf_free(&b);
        bi__agent_fail(a, -ENOMEM, "%s", "cannot encode HELLO");
        return;
    }
    a->state = BI_A_HELLO;
    bi__send_small(a, &b);
    wire_buf_free(&b);
}

/* Start handshakes until max_handshakes are under way or all were started. */
static void bi__connect_next(bi_load_t *L)
{
    while (L->next_connect < L->end_connect && L->pending_hs < L->cfg.max_handshakes && L->error == 0) {
        bi_agent_t *a = &L->agents[L->nagents++];
        unsigned i = L->next_connect++;
        memset(a, 0, sizeof *a);
        a->L = L;
        a->idx = i;
        a->busy = L->connect_busy;
        a->secret = L->m->secret[i];
        bi_machine_name(i, a->name, sizeof a->name);
        wire_decoder_init(&a->dec);
        if (a->busy) {
            a->ring_cap = L->cfg.window / L->frame_raw + 1;
            a->ring = tm_calloc(a->ring_cap, sizeof *a->ring);
            if (!a->ring) {
                bi__fail(L, -ENOMEM);
                return;
            }
        }
        uv_tcp_init(&L->loop, &a->tcp);
        a->tcp.data = a;
        a->open = true;
        a->conn_req.data = a;
        L->pending_hs++;
        int rc = uv_tcp_connect(&a->conn_req, &a->tcp, (const struct sockaddr *)&L->addr, bi__connect_cb);
        if (rc) {
            bi__agent_fail(a, rc, "connect: %s", uv_strerror(rc));
            return;
        }
    }
}

static void bi__deadline_cb(uv_timer_t *t)
{
    bi_load_t *L = t->data;
    if (L->streaming && !L->draining) {
        /* Time is up: send nothing more, wait for what is in flight. */
        L->streaming = false;
        L->draining = true;
        if (L->inflight_frames == 0) {
            uv_stop(&L->loop);
            return;
        }
        uv_timer_start(&L->timer, bi__deadline_cb, 60000, 0);
        return;
    }
    fprintf(stderr, "bench_ingest: timed out %s\n",
            L->draining ? "waiting for the last acknowledgements" : "waiting for the handshakes");
    bi__fail(L, -ETIMEDOUT);
}

static void bi__sample_timer_cb(uv_timer_t *t)
{
    bi_load_t *L = t->data;
    if (L->sample_cb)
        L->sample_cb(L->sample_arg);
}

/* ---- the API ------------------------------------------------------------------- */

int bi_load_new(const bi_load_cfg_t *cfg, const bj_pool_t *pool, bi_load_t **out)
{
    if (cfg->record == 0 || cfg->record % WIRE_SECTOR || cfg->record > WIRE_MAX_WRITE || cfg->per_frame == 0 || cfg->max_agents == 0 ||
        cfg->per_frame > WIRE_MAX_BATCH_RECORDS || (uint64_t)cfg->record * cfg->per_frame > WIRE_MAX_BATCH_DATA ||
        (uint64_t)cfg->record * cfg->per_frame > cfg->window || pool->len < cfg->record * cfg->per_frame)
        return TM_EINVAL;
    bi_load_t *L = tm_calloc(1, sizeof *L);
    if (!L)
        return -ENOMEM;
    L->cfg = *cfg;
    if (L->cfg.max_handshakes == 0)
        L->cfg.max_handshakes = 64;
    L->pool = pool;
    L->frame_raw = (uint32_t)(cfg->record * cfg->per_frame);
    L->hdr_len = WIRE_HDR_LEN + WIRE_RECORDS_HDR_LEN + (size_t)cfg->per_frame * WIRE_ENTRY_LEN;
    L->nslices = pool->len / cfg->record / cfg->per_frame * cfg->per_frame;
    L->hashes = tm_malloc(L->nslices * sizeof *L->hashes);
    L->readbuf = tm_malloc(BI_READ_BUF);
    L->xxh = XXH3_createState();
    L->lat_cap = BI_MAX_LAT;
    L->lat = tm_malloc(L->lat_cap * sizeof *L->lat);
    L->agents = tm_calloc(cfg->max_agents, sizeof *L->agents);
    int rc = -ENOMEM;
    if (!L->hashes || !L->readbuf || !L->xxh || !L->lat || !L->agents)
        goto out_free;
    if (tm_addr_parse(cfg->addr, &L->addr) != 0) {
        rc = TM_EINVAL;
        goto out_free;
    }
    for (size_t i = 0; i < L->nslices; i++)
        L->hashes[i] = XXH3_64bits(pool->base + i * cfg->record, cfg->record);
    rc = bi__selfcheck(L);
    if (rc)
        goto out_free;
    rc = uv_loop_init(&L->loop);
    if (rc)
        goto out_free;
    uv_timer_init(&L->loop, &L->timer);
    uv_timer_init(&L->loop, &L->sampler);
    L->timer.data = L->sampler.data = L;
    *out = L;
    return 0;

out_free:
    if (L->xxh)
        XXH3_freeState(L->xxh);
    tm_free(L->agents);
    tm_free(L->lat);
    tm_free(L->readbuf);
    tm_free(L->hashes);
    tm_free(L);
    return rc;
}

size_t bi_load_journal_record(const bi_load_t *L)
{
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    char name[WIRE_MAX_NAME + 1];
    bi_machine_name(0, name, sizeof name);
    return ingest_rec_batch_header(hdr, 0, name) + (L->hdr_len - WIRE_HDR_LEN) + L->frame_raw;
}

int bi_load_connect(bi_load_t *L, const bi_machines_t *m, unsigned first, unsigned n, bool busy, double timeout_s)
{
    if (first + n > m->n)
        return TM_EINVAL;
    /* The array never grows: libuv holds pointers to the handles in it. */
    if (L->nagents + n > L->cfg.max_agents) {
        fprintf(stderr, "bench_ingest: bug: more sessions than max_agents\n");
        return TM_EINVAL;
    }
    L->m = m;
    L->next_connect = first;
    L->end_connect = first + n;
    L->connect_busy = busy;
    L->want_welcome = n;
    uv_timer_start(&L->timer, bi__deadline_cb, (uint64_t)(timeout_s * 1000), 0);
    bi__connect_next(L);
    if (L->error == 0 && L->want_welcome > 0)
        uv_run(&L->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&L->timer);
    if (L->error == 0 && L->want_welcome > 0)
        L->error = -EIO;
    return L->error;
}

static double bi__self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

int bi_load_stream(bi_load_t *L, double seconds, uint64_t budget, unsigned sample_ms, bi_sample_cb cb, void *arg,
                   bi_load_result_t *out)
{
    memset(out, 0, sizeof *out);
    if (L->error)
        return L->error;
    L->acked_frames = L->acked_writes = L->acked_bytes = L->wire_bytes = 0;
    L->lat_n = 0;
    L->issued = 0;
    L->budget = budget;
    L->streaming = true;
    L->draining = false;
    L->sample_cb = cb;
    L->sample_arg = arg;
    if (sample_ms && cb)
        uv_timer_start(&L->sampler, bi__sample_timer_cb, sample_ms, sample_ms);
    uv_timer_start(&L->timer, bi__deadline_cb, (uint64_t)(seconds * 1000), 0);

    double cpu0 = bi__self_cpu();
    uint64_t t0 = tm_mono_ns();
    L->t_last_ack = t0;
    for (size_t i = 0; i < L->nagents; i++)
        bi__pump(&L->agents[i]);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    double cpu1 = bi__self_cpu();
    uv_timer_stop(&L->timer);
    uv_timer_stop(&L->sampler);
    L->streaming = false;
    if (L->error == 0 && (!L->draining || L->inflight_frames != 0))
        L->error = -EIO;
    if (L->error)
        return L->error;

    out->secs = (double)(L->t_last_ack - t0) / 1e9;
    out->frames = L->acked_frames;
    out->writes = L->acked_writes;
    out->payload_bytes = L->acked_bytes;
    out->wire_bytes = L->wire_bytes;
    out->client_cpu_s = cpu1 - cpu0;
    size_t n = L->lat_n < L->lat_cap ? L->lat_n : L->lat_cap;
    bj_sort_u64(L->lat, n);
    out->lat_kept = n;
    out->p50_us = (double)bj_percentile(L->lat, n, 0.50) / 1e3;
    out->p99_us = (double)bj_percentile(L->lat, n, 0.99) / 1e3;
    out->max_us = n ? (double)L->lat[n - 1] / 1e3 : 0;
    return 0;
}

void bi_load_free(bi_load_t *L)
{
    if (!L)
        return;
    if (L->more_failures)
        fprintf(stderr, "bench_ingest: ... and %u more session(s) failed after that\n", L->more_failures);
    L->closing = true;
    for (size_t i = 0; i < L->nagents; i++) {
        bi_agent_t *a = &L->agents[i];
        if (a->open && !uv_is_closing((uv_handle_t *)&a->tcp))
            uv_close((uv_handle_t *)&a->tcp, NULL);
    }
    uv_close((uv_handle_t *)&L->timer, NULL);
    uv_close((uv_handle_t *)&L->sampler, NULL);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&L->loop) != 0)
        fprintf(stderr, "bench_ingest: bug: a libuv handle was left open\n");
    for (size_t i = 0; i < L->nagents; i++) {
        wire_decoder_free(&L->agents[i].dec);
        tm_free(L->agents[i].ring);
    }
    while (L->free_sends) {
        bi_send_t *s = L->free_sends;
        L->free_sends = s->next_free;
        tm_free(s);
    }
    XXH3_freeState(L->xxh);
    tm_free(L->agents);
    tm_free(L->lat);
    tm_free(L->readbuf);
    tm_free(L->hashes);
    tm_free(L);
}
