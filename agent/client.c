/*
 * The agent's session: one TCP connection at a time, reconnected forever.
 *
 * States: IDLE (waiting out the backoff) → CONNECTING → HELLO (sent HELLO,
 * waiting for CHALLENGE) → AUTH (sent AUTH, waiting for WELCOME) → STREAMING.
 * Any failure closes the socket; its close callback arms the reconnect timer
 * with the delay the failure chose, so exactly one connection exists at any
 * time and a late callback of an old connection never touches a new one
 * (the handle is only reused after its close callback).
 */
#include "agent/client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "base/addr.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

typedef enum { ST_IDLE, ST_CONNECTING, ST_HELLO, ST_AUTH, ST_STREAMING, ST_CLOSING } client_state_t;

#define READ_BUF_LEN (64u << 10)

struct agent_client {
    uv_loop_t *loop;
    agent_stream_t *stream;
    agent_client_cbs_t cbs;
    void *arg;

    char server[128];
    struct sockaddr_storage addr;
    char machine[WIRE_MAX_NAME + 1];
    wire_hello_t hello;
    uint8_t secret[AGENT_SECRET_LEN];
    bool compress;
    unsigned backoff_min_ms, backoff_max_ms;

    client_state_t state;
    uv_tcp_t tcp;
    bool tcp_open;          /* tcp initialised and not closed yet */
    uv_connect_t connect_req;
    uv_timer_t retry_timer;
    uv_timer_t send_timer;
    bool send_scheduled;
    unsigned writes;        /* RECORDS frames on the socket */
    wire_decoder_t dec;
    uint8_t rbuf[READ_BUF_LEN];
    bool rbuf_busy;

    /* What the next reconnect does; chosen by whoever dropped the link. */
    unsigned backoff_ms;    /* the delay of the next retry */
    unsigned next_delay_ms; /* set when the connection is dropped */
    bool refused;           /* the last drop was a refusal by the server */
    uint64_t last_refusal_log_ms;
    char refusal[1024];

    wire_welcome_t welcome;
    agent_client_stats_t stats;
    bool down_due;          /* a session past its WELCOME was dropped: tell the producer once it is closed */
    /* group rounds noted, a ring of the newest AGENT_ROUND_HISTORY (allocated at the first) */
    agent_round_rec_t *rounds;
    uint64_t rounds_noted;

    unsigned pending_closes;
    void (*close_cb)(void *arg);
    void *close_arg;
};

typedef struct out_frame {
    uv_write_t req;
    agent_client_t *c;
    wire_buf_t b;
    bool records;
} out_frame_t;

static void client_drop(agent_client_t *c, const char *why_fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_pump(agent_client_t *c);

/* ---- secrets and MACs ---------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int agent_secret_read(const char *path, uint8_t out[AGENT_SECRET_LEN], char *err, size_t errlen)
{
    char text[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        snprintf(err, errlen, "cannot read secret file %s: %s", path, tm_strerror(e));
        return e;
    }
    ssize_t n = read(fd, text, sizeof text - 1);
    int e = n < 0 ? -errno : 0;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read secret file %s: %s", path, tm_strerror(e));
        return e;
    }
    text[n] = '\0';
    char *p = text;
    while (*p && isspace((unsigned char)*p))
        p++;
    size_t len = strlen(p);
    while (len && isspace((unsigned char)p[len - 1]))
        p[--len] = '\0';
    if (len != 2 * AGENT_SECRET_LEN) {
        snprintf(err, errlen, "secret file %s: expected %u hex characters, found %zu characters", path,
                 2 * AGENT_SECRET_LEN, len);
        return TM_EINVAL;
    }
    for (unsigned i = 0; i < AGENT_SECRET_LEN; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "secret file %s: expected %u hex characters, found '%c' at %u", path,
                     2 * AGENT_SECRET_LEN, hi < 0 ? p[2 * i] : p[2 * i + 1], hi < 0 ? 2 * i + 1 : 2 * i + 2);
            return TM_EINVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int agent_auth_mac(const uint8_t secret[AGENT_SECRET_LEN], const uint8_t nonce[WIRE_NONCE_LEN],
                   const char *machine, uint8_t mac[WIRE_MAC_LEN])
{
    size_t ml = strlen(machine);
    size_t cl = sizeof AGENT_AUTH_CONTEXT - 1;
    uint8_t msg[sizeof AGENT_AUTH_CONTEXT - 1 + WIRE_NONCE_LEN + WIRE_MAX_NAME];
    if (ml > WIRE_MAX_NAME)
        return TM_EINVAL;
    memcpy(msg, AGENT_AUTH_CONTEXT, cl);
    memcpy(msg + cl, nonce, WIRE_NONCE_LEN);
    memcpy(msg + cl + WIRE_NONCE_LEN, machine, ml);
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), secret, AGENT_SECRET_LEN, msg, cl + WIRE_NONCE_LEN + ml, mac, &outlen) ||
        outlen != WIRE_MAC_LEN)
        return TM_EINVAL;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

int agent_client_new(uv_loop_t *loop, const agent_client_opts_t *o, agent_stream_t *s,
                     const agent_client_cbs_t *cbs, void *arg, agent_client_t **out)
{
    if (!o->server || strlen(o->server) >= sizeof ((agent_client_t *)0)->server || !o->machine ||
        !wire_name_ok(o->machine) || o->ndisks == 0 || o->ndisks > WIRE_MAX_DISKS)
        return TM_EINVAL;
    const char *ver = o->agent_version ? o->agent_version : "tidemark-agent";
    if (strlen(ver) > WIRE_MAX_TEXT)
        return TM_EINVAL;
    for (unsigned i = 0; i < o->ndisks; i++)
        if (!wire_name_ok(o->disks[i].name))
            return TM_EINVAL;

    agent_client_t *c = tm_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    if (tm_addr_parse(o->server, &c->addr) != 0) {
        tm_free(c);
        return TM_EINVAL;
    }
    c->loop = loop;
    c->stream = s;
    if (cbs)
        c->cbs = *cbs;
    c->arg = arg;
    snprintf(c->server, sizeof c->server, "%s", o->server);
    snprintf(c->machine, sizeof c->machine, "%s", o->machine);
    memcpy(c->secret, o->secret, AGENT_SECRET_LEN);
    c->compress = o->compress;
    c->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : AGENT_BACKOFF_MIN_MS;
    c->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : AGENT_BACKOFF_MAX_MS;
    c->backoff_ms = c->backoff_min_ms;

    c->hello.version = WIRE_VERSION;
    c->hello.ndisks = (uint16_t)o->ndisks;
    snprintf(c->hello.machine, sizeof c->hello.machine, "%s", o->machine);
    snprintf(c->hello.agent_version, sizeof c->hello.agent_version, "%s", ver);
    for (unsigned i = 0; i < o->ndisks; i++)
        c->hello.disks[i] = o->disks[i];

    wire_decoder_init(&c->dec);
    uv_timer_init(loop, &c->retry_timer);
    uv_timer_init(loop, &c->send_timer);
    c->retry_timer.data = c;
    c->send_timer.data = c;
    c->state = ST_IDLE;
    *out = c;
    return 0;
}

static void on_connect(uv_connect_t *req, int status);
static void on_retry(uv_timer_t *t);

static void client_connect(agent_client_t *c)
{
    int rc = uv_tcp_init(c->loop, &c->tcp);
    if (rc != 0) {
        tm_error("cannot make a socket: %s; retrying in %.1f s", uv_strerror(rc), c->backoff_max_ms / 1000.0);
        c->state = ST_IDLE;
        uv_timer_start(&c->retry_timer, on_retry, c->backoff_max_ms, 0);
        return;
    }
    c->tcp.data = c;
    c->tcp_open = true;
    c->state = ST_CONNECTING;
    wire_decoder_free(&c->dec);
    wire_decoder_init(&c->dec);
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&c->addr, on_connect);
    if (rc != 0)
        client_drop(c, "server %s unreachable (%s)", c->server, uv_strerror(rc));
}

static void on_retry(uv_timer_t *t)
{
    agent_client_t *c = t->data;
    if (c->state == ST_IDLE)
        client_connect(c);
}

void agent_client_start(agent_client_t *c)
{
    if (c->state == ST_IDLE && !c->tcp_open)
        client_connect(c);
}

static void client_free(agent_client_t *c)
{
    wire_decoder_free(&c->dec);
    tm_free(c->rounds);
    tm_free(c);
}

static void on_tcp_closed(uv_handle_t *h)
{
    agent_client_t *c = h->data;
    c->tcp_open = false;
    if (c->state == ST_CLOSING) {
        if (--c->pending_closes == 0) {
            void (*cb)(void *) = c->close_cb;
            void *arg = c->close_arg;
            client_free(c);
            if (cb)
                cb(arg);
        }
        return;
    }
    c->state = ST_IDLE;
    uv_timer_start(&c->retry_timer, on_retry, c->next_delay_ms, 0);
    /* Here, not in client_drop: a drop can happen inside any call of the
     * producer's (a failed write), which must not be re-entered. */
    if (c->down_due) {
        c->down_due = false;
        if (c->cbs.down)
            c->cbs.down(c, c->arg);
    }
}

/* End the connection: log why (with the delay), pick the next delay, close.
 * The reconnect is armed by the close callback. */
static void client_drop(agent_client_t *c, const char *why_fmt, ...)
{
    if (c->state == ST_CLOSING || c->state == ST_IDLE)
        return;
    char why[512];
    va_list ap;
    va_start(ap, why_fmt);
    vsnprintf(why, sizeof why, why_fmt, ap);
    va_end(ap);

    bool was_streaming = c->state == ST_STREAMING;
    c->stats.connected = false;
    if (c->refused) {
        /* A refusal does not go away by retrying fast; say it now and then. */
        c->next_delay_ms = c->backoff_max_ms;
        uint64_t now = uv_now(c->loop);
        if (c->last_refusal_log_ms == 0 || now - c->last_refusal_log_ms >= AGENT_REFUSAL_LOG_MS) {
            tm_error("%s; retrying every %.1f s", c->refusal, c->next_delay_ms / 1000.0);
            c->last_refusal_log_ms = now ? now : 1;
        }
        c->refused = false;
    } else {
        c->next_delay_ms = c->backoff_ms;
        if (was_streaming)
            tm_warn("%s; reconnecting in %.1f s", why, c->next_delay_ms / 1000.0);
        else
            tm_warn("%s; retrying in %.1f s", why, c->next_delay_ms / 1000.0);
        c->backoff_ms = c->backoff_ms * 2 > c->backoff_max_ms ? c->backoff_max_ms : c->backoff_ms * 2;
    }
    c->state = ST_IDLE; /* nothing of this connection is acted on any more */
    c->down_due = was_streaming;
    uv_timer_stop(&c->send_timer);
    c->send_scheduled = false;
    if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

static void on_handle_closed(uv_handle_t *h)
{
    agent_client_t *c = h->data;
    if (--c->pending_closes == 0) {
        void (*cb)(void *) = c->close_cb;
        void *arg = c->close_arg;
        client_free(c);
        if (cb)
            cb(arg);
    }
}

void agent_client_close(agent_client_t *c, void (*cb)(void *arg), void *arg)
{
    c->state = ST_CLOSING;
    c->close_cb = cb;
    c->close_arg = arg;
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->send_timer, on_handle_closed);
    if (c->tcp_open) {
        c->pending_closes++;
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    }
}

void agent_client_get_stats(const agent_client_t *c, agent_client_stats_t *st)
{
    *st = c->stats;
}

/* ---- group rounds' records ------------------------------------------------ */

void agent_client_note_round(agent_client_t *c, const agent_round_rec_t *r)
{
    switch (r->outcome) {
    case AGENT_ROUND_COMMITTED: c->stats.rounds_committed++; break;
    case AGENT_ROUND_ABORTED: c->stats.rounds_aborted++; break;
    case AGENT_ROUND_TIMED_OUT: c->stats.rounds_timed_out++; break;
    default: c->stats.rounds_failed++; break;
    }
    if (r->hold_us > c->stats.hold_max_us)
        c->stats.hold_max_us = r->hold_us;
    if (r->late_us > 0) {
        c->stats.rounds_late++;
        if (r->late_us > c->stats.late_max_us)
            c->stats.late_max_us = r->late_us;
    }
    if (!c->rounds && !(c->rounds = tm_malloc(AGENT_ROUND_HISTORY * sizeof *c->rounds)))
        return; /* the counts above still hold */
    c->rounds[c->rounds_noted % AGENT_ROUND_HISTORY] = *r;
    c->rounds_noted++;
}

size_t agent_client_rounds(const agent_client_t *c, agent_round_rec_t *out, size_t max)
{
    uint64_t kept = c->rounds_noted < AGENT_ROUND_HISTORY ? c->rounds_noted : AGENT_ROUND_HISTORY;
    if (!c->rounds)
        kept = 0;
    size_t n = kept < max ? (size_t)kept : max;
    for (size_t i = 0; i < n; i++)
        out[i] = c->rounds[(c->rounds_noted - n + i) % AGENT_ROUND_HISTORY];
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t agent_client_hold_percentile(const agent_client_t *c, double p)
{
    uint64_t kept = c->rounds_noted < AGENT_ROUND_HISTORY ? c->rounds_noted : AGENT_ROUND_HISTORY;
    if (!c->rounds || kept == 0)
        return 0;
    uint64_t *v = tm_malloc((size_t)kept * sizeof *v);
    if (!v)
        return 0;
    size_t n = 0;
    for (uint64_t i = 0; i < kept; i++)
        if (c->rounds[i].outcome != AGENT_ROUND_FAILED)
            v[n++] = c->rounds[i].hold_us;
    uint64_t r = 0;
    if (n) {
        qsort(v, n, sizeof *v, cmp_u64);
        /* nearest rank: the smallest value with at least p% at or below it */
        double rank = p / 100.0 * (double)n;
        size_t k = rank <= 1.0 ? 0 : (size_t)ceil(rank) - 1;
        r = v[k < n ? k : n - 1];
    }
    tm_free(v);
    return r;
}

void agent_client_round_summary(const agent_client_t *c, char *buf, size_t len)
{
    const agent_client_stats_t *st = &c->stats;
    snprintf(buf, len,
             "group rounds: %llu committed, %llu aborted, %llu timed out, %llu failed; hold p50 %.1f ms, p99 %.1f "
             "ms, max %.1f ms",
             (unsigned long long)st->rounds_committed, (unsigned long long)st->rounds_aborted,
             (unsigned long long)st->rounds_timed_out, (unsigned long long)st->rounds_failed,
             (double)agent_client_hold_percentile(c, 50) / 1000.0, (double)agent_client_hold_percentile(c, 99) / 1000.0,
             (double)st->hold_max_us / 1000.0);
    size_t used = strlen(buf);
    if (st->rounds_late && used < len)
        snprintf(buf + used, len - used, ", %llu late at the hold limit (acted on up to %.1f ms after it)",
                 (unsigned long long)st->rounds_late, (double)st->late_max_us / 1000.0);
}

/* ---- writing ------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
    out_frame_t *f = req->data;
    agent_client_t *c = f->c;
    bool records = f->records;
    wire_buf_free(&f->b);
    tm_free(f);
    if (records)
        c->writes--;
    if (c->state == ST_CLOSING || c->state == ST_IDLE)
        return;
    if (status != 0) {
        client_drop(c, "connection to server %s lost (%s)", c->server, uv_strerror(status));
        return;
    }
    if (records)
        client_pump(c);
}

/* Queue the frame in f on the socket; takes f. */
static int client_send(agent_client_t *c, out_frame_t *f)
{
    f->c = c;
    f->req.data = f;
    uv_buf_t ub = uv_buf_init((char *)f->b.data, (unsigned)f->b.len);
    c->stats.bytes_sent += f->b.len;
    int rc = uv_write(&f->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rc != 0) {
        wire_buf_free(&f->b);
        tm_free(f);
        client_drop(c, "connection to server %s lost (%s)", c->server, uv_strerror(rc));
        return rc;
    }
    if (f->records)
        c->writes++;
    return 0;
}

static out_frame_t *frame_new(bool records)
{
    out_frame_t *f = tm_calloc(1, sizeof *f);
    if (f)
        f->records = records;
    return f;
}

/* Send batches while the window and the socket queue allow. */
static void client_pump(agent_client_t *c)
{
    while (c->state == ST_STREAMING && c->writes < AGENT_MAX_WRITES && agent_stream_has_unsent(c->stream)) {
        out_frame_t *f = frame_new(true);
        if (!f) {
            client_drop(c, "out of memory making a batch");
            return;
        }
        int n = agent_stream_next_batch(c->stream, &f->b, c->welcome.max_batch_data, c->welcome.window_bytes,
                                        c->compress);
        if (n <= 0) {
            wire_buf_free(&f->b);
            tm_free(f);
            if (n < 0)
                client_drop(c, "out of memory making a batch");
            return;
        }
        c->stats.batches++;
        c->stats.records_sent += (uint64_t)n;
        if (client_send(c, f) != 0)
            return;
    }
}

static void on_send_timer(uv_timer_t *t)
{
    agent_client_t *c = t->data;
    c->send_scheduled = false;
    client_pump(c);
}

void agent_client_kick(agent_client_t *c)
{
    if (c->state != ST_STREAMING || c->send_scheduled)
        return;
    /* A zero timer runs on the next loop iteration: whatever the producer
     * appends in this one goes out in the same batch. */
    c->send_scheduled = true;
    uv_timer_start(&c->send_timer, on_send_timer, 0, 0);
}

/* A small frame on the live session; takes nothing on failure. */
static int client_send_small(agent_client_t *c, int (*enc)(agent_client_t *, wire_buf_t *, const void *),
                             const void *arg)
{
    if (c->state != ST_STREAMING)
        return TM_ECLOSED;
    out_frame_t *f = frame_new(false);
    if (!f)
        return -ENOMEM;
    if (enc(c, &f->b, arg) != 0 || f->b.oom) {
        wire_buf_free(&f->b);
        tm_free(f);
        return -ENOMEM;
    }
    return client_send(c, f) == 0 ? 0 : TM_ECLOSED;
}

static int enc_resync_request(agent_client_t *c, wire_buf_t *b, const void *arg)
{
    (void)c;
    return wire_enc_resync_request(b, arg);
}

int agent_client_resync_request(agent_client_t *c, const wire_resync_request_t *q)
{
    return client_send_small(c, enc_resync_request, q);
}

static int enc_resync_ack(agent_client_t *c, wire_buf_t *b, const void *arg)
{
    (void)c;
    const uint16_t *v = arg;
    return wire_enc_resync_ack(b, v[0], v[1]);
}

int agent_client_resync_ack(agent_client_t *c, uint16_t disk, uint16_t frames)
{
    uint16_t v[2] = {disk, frames};
    return client_send_small(c, enc_resync_ack, v);
}

static int enc_prepared(agent_client_t *c, wire_buf_t *b, const void *arg)
{
    (void)c;
    return wire_enc_prepared(b, arg);
}

int agent_client_prepared(agent_client_t *c, const wire_prepared_t *m)
{
    wire_buf_t probe = {0};
    /* A body the server would refuse is the caller's bug, not memory. */
    int ok = wire_enc_prepared(&probe, m);
    bool oom = probe.oom;
    wire_buf_free(&probe);
    if (ok != 0 && !oom)
        return TM_EINVAL;
    return client_send_small(c, enc_prepared, m);
}

void agent_client_abort(agent_client_t *c, const char *why)
{
    client_drop(c, "server %s: %s", c->server, why);
}

/* ---- reading ------------------------------------------------------------- */

static void handle_frame(agent_client_t *c)
{
    const uint8_t *body = c->dec.body;
    size_t len = c->dec.hdr.body_len;
    char reason[160] = "";
    int rc;

    switch (c->dec.hdr.type) {
    case WIRE_T_CHALLENGE: {
        wire_challenge_t ch;
        if (c->state != ST_HELLO) {
            client_drop(c, "server %s sent an unexpected CHALLENGE", c->server);
            return;
        }
        if ((rc = wire_dec_challenge(body, len, &ch, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad CHALLENGE: %s", c->server, reason);
            return;
        }
        uint8_t mac[WIRE_MAC_LEN];
        out_frame_t *f = frame_new(false);
        if (!f || agent_auth_mac(c->secret, ch.nonce, c->machine, mac) != 0 || wire_enc_auth(&f->b, mac) != 0) {
            if (f)
                wire_buf_free(&f->b);
            tm_free(f);
            client_drop(c, "out of memory answering the challenge");
            return;
        }
        c->state = ST_AUTH;
        client_send(c, f);
        return;
    }
    case WIRE_T_WELCOME: {
        wire_welcome_t w;
        if (c->state != ST_AUTH) {
            client_drop(c, "server %s sent an unexpected WELCOME", c->server);
            return;
        }
        if ((rc = wire_dec_welcome(body, len, &w, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad WELCOME: %s", c->server, reason);
            return;
        }
        if (w.window_bytes == 0 || w.max_batch_data == 0) {
            client_drop(c, "server %s sent a WELCOME with an empty window", c->server);
            return;
        }
        if (w.ndisks != c->hello.ndisks) {
            client_drop(c, "server %s sent a WELCOME for %u disks; this agent has %u", c->server, w.ndisks,
                        c->hello.ndisks);
            return;
        }
        agent_stream_t *s = c->stream;
        uint64_t held_first = s->acked_seq + 1, held_last = s->next_seq - 1;
        rc = agent_stream_resume(s, w.next_seq);
        if (rc != 0) {
            c->refused = true;
            snprintf(c->refusal, sizeof c->refusal,
                     "server %s wants the stream of machine %s from sequence %llu, but this agent holds "
                     "%llu..%llu (%s): the two sides disagree",
                     c->server, c->machine, (unsigned long long)w.next_seq, (unsigned long long)held_first,
                     (unsigned long long)held_last,
                     rc == TM_ENOTFOUND ? "the server lost acknowledged records"
                                        : "the server holds records this agent never sent");
            client_drop(c, "%s", c->refusal);
            return;
        }
        c->welcome = w;
        c->state = ST_STREAMING;
        c->stats.connects++;
        c->stats.connected = true;
        c->backoff_ms = c->backoff_min_ms;
        c->last_refusal_log_ms = 0;
        tm_info("connected to server %s as machine %s; stream resumes at sequence %llu", c->server, c->machine,
                (unsigned long long)w.next_seq);
        if (c->cbs.welcome)
            c->cbs.welcome(c, &w, c->arg);
        if (c->state == ST_STREAMING)
            client_pump(c);
        return;
    }
    case WIRE_T_ACK: {
        uint64_t durable;
        if (c->state != ST_STREAMING) {
            client_drop(c, "server %s sent an unexpected ACK", c->server);
            return;
        }
        if ((rc = wire_dec_ack(body, len, &durable, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad ACK: %s", c->server, reason);
            return;
        }
        if (agent_stream_ack(c->stream, durable) < 0) {
            client_drop(c, "server %s acknowledged sequence %llu, which was never sent", c->server,
                        (unsigned long long)durable);
            return;
        }
        c->stats.acks++;
        if (c->cbs.acked)
            c->cbs.acked(c, durable, c->arg);
        client_pump(c);
        return;
    }
    case WIRE_T_TAG_REQUEST: {
        uint8_t kind;
        uint64_t id;
        char name[WIRE_MAX_NAME + 1];
        if (c->state != ST_STREAMING) {
            /* Before WELCOME the stream has no resume point to tag at. */
            client_drop(c, "server %s sent an unexpected TAG_REQUEST", c->server);
            return;
        }
        if ((rc = wire_dec_tag_request(body, len, &kind, &id, name, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad TAG_REQUEST: %s", c->server, reason);
            return;
        }
        if (c->cbs.tag) {
            c->cbs.tag(c, kind, id, name, c->arg);
            return;
        }
        /* A tag the server asked for is never refused for lack of room: it
         * is a few bytes, and refusing would stall the orchestrator. */
        rc = agent_stream_tag(c->stream, kind, id, name, true, NULL);
        if (rc != 0)
            tm_warn("cannot add tag '%s' (id %llu) asked for by the server: %s", name, (unsigned long long)id,
                    tm_strerror(rc));
        else
            tm_info("tag '%s' (id %llu) added to the stream at the server's request", name,
                    (unsigned long long)id);
        agent_client_kick(c);
        return;
    }
    case WIRE_T_RESYNC_SUMS: {
        wire_resync_sums_t m;
        if (c->state != ST_STREAMING || !c->cbs.sums) {
            client_drop(c, "server %s sent unexpected RESYNC_SUMS", c->server);
            return;
        }
        if ((rc = wire_dec_resync_sums(body, len, &m, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent bad RESYNC_SUMS: %s", c->server, reason);
            return;
        }
        c->cbs.sums(c, &m, c->arg);
        return;
    }
    case WIRE_T_STOP: {
        wire_stop_t m;
        if (c->state != ST_STREAMING) {
            /* Like a tag request: the final tag needs a place in the stream. */
            client_drop(c, "server %s sent an unexpected STOP", c->server);
            return;
        }
        if ((rc = wire_dec_stop(body, len, &m, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad STOP: %s", c->server, reason);
            return;
        }
        tm_warn("server %s stops replication of machine %s: %s; taking no new writes, final tag '%s' (id %llu) "
                "once every write accepted before is in the stream",
                c->server, c->machine, m.reason[0] ? m.reason : "no reason given", m.name,
                (unsigned long long)m.id);
        c->stats.stopped = true;
        if (c->cbs.stop) {
            c->cbs.stop(c, &m, c->arg);
            return;
        }
        rc = agent_stream_tag(c->stream, WIRE_TAG_CRASH, m.id, m.name, true, NULL);
        if (rc != 0)
            tm_warn("cannot add final tag '%s' (id %llu): %s", m.name, (unsigned long long)m.id, tm_strerror(rc));
        agent_client_kick(c);
        return;
    }
    case WIRE_T_RESUME: {
        char text[WIRE_MAX_TEXT + 1];
        if (c->state != ST_STREAMING) {
            client_drop(c, "server %s sent an unexpected RESUME", c->server);
            return;
        }
        if ((rc = wire_dec_resume(body, len, text, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad RESUME: %s", c->server, reason);
            return;
        }
        bool was = c->stats.stopped;
        c->stats.stopped = false;
        if (was)
            tm_info("server %s resumes replication of machine %s%s%s", c->server, c->machine, text[0] ? ": " : "",
                    text);
        if (c->cbs.resume)
            c->cbs.resume(c, text, c->arg);
        return;
    }
    case WIRE_T_GROUP_PREPARE: {
        wire_group_prepare_t m;
        if (c->state != ST_STREAMING) {
            /* The hold's position is in the stream: it needs a WELCOME. */
            client_drop(c, "server %s sent an unexpected GROUP_PREPARE", c->server);
            return;
        }
        if ((rc = wire_dec_group_prepare(body, len, &m, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad GROUP_PREPARE: %s", c->server, reason);
            return;
        }
        if (c->cbs.group_prepare) {
            c->cbs.group_prepare(c, &m, c->arg);
            return;
        }
        wire_prepared_t p = {.round = m.round, .status = WIRE_PREPARED_FAILED,
                             .reason = "this agent takes no part in group rounds"};
        tm_warn("group round %llu: refused: this agent takes no part in group rounds", (unsigned long long)m.round);
        agent_client_prepared(c, &p);
        return;
    }
    case WIRE_T_GROUP_COMMIT:
    case WIRE_T_GROUP_ABORT: {
        uint64_t round;
        bool commit = c->dec.hdr.type == WIRE_T_GROUP_COMMIT;
        if (c->state != ST_STREAMING) {
            client_drop(c, "server %s sent an unexpected %s", c->server, commit ? "GROUP_COMMIT" : "GROUP_ABORT");
            return;
        }
        rc = commit ? wire_dec_group_commit(body, len, &round, reason, sizeof reason)
                    : wire_dec_group_abort(body, len, &round, reason, sizeof reason);
        if (rc != 0) {
            client_drop(c, "server %s sent a bad %s: %s", c->server, commit ? "GROUP_COMMIT" : "GROUP_ABORT", reason);
            return;
        }
        if (commit && c->cbs.group_commit)
            c->cbs.group_commit(c, round, c->arg);
        else if (!commit && c->cbs.group_abort)
            c->cbs.group_abort(c, round, c->arg);
        return;
    }
    case WIRE_T_ERROR: {
        wire_error_t e;
        if ((rc = wire_dec_error(body, len, &e, reason, sizeof reason)) != 0) {
            client_drop(c, "server %s sent a bad ERROR: %s", c->server, reason);
            return;
        }
        switch (e.code) {
        case WIRE_E_STOPPED:
            /* Not a fault to fix here: the appliance ended this machine's
             * replication (a committed failover). Say so in those words. */
            c->refused = true;
            snprintf(c->refusal, sizeof c->refusal,
                     "server %s: replication of this machine (%s) was stopped on the appliance: %s", c->server,
                     c->machine, e.text[0] ? e.text : "no reason given");
            client_drop(c, "%s", c->refusal);
            return;
        case WIRE_E_AUTH:
        case WIRE_E_BUSY:
        case WIRE_E_VERSION:
        case WIRE_E_DISKS:
            c->refused = true;
            snprintf(c->refusal, sizeof c->refusal, "server refused this agent: %s: %s", wire_err_name(e.code),
                     e.text);
            client_drop(c, "%s", c->refusal);
            return;
        default:
            client_drop(c, "server %s reported an error: %s: %s", c->server, wire_err_name(e.code), e.text);
            return;
        }
    }
    default:
        client_drop(c, "server %s sent a frame of type 0x%02x that an agent does not take", c->server,
                    c->dec.hdr.type);
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    agent_client_t *c = h->data;
    (void)suggested;
    if (c->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    c->rbuf_busy = true;
    *buf = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    agent_client_t *c = st->data;
    (void)buf;
    c->rbuf_busy = false;
    if (c->state == ST_CLOSING || c->state == ST_IDLE)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            client_drop(c, "connection to server %s lost (closed by the server)", c->server);
        else
            client_drop(c, "connection to server %s lost (%s)", c->server, uv_strerror((int)nread));
        return;
    }
    size_t off = 0;
    while (off < (size_t)nread && c->state != ST_IDLE && c->state != ST_CLOSING) {
        size_t used = 0;
        wire_status_t ws = wire_decode(&c->dec, c->rbuf + off, (size_t)nread - off, &used);
        off += used;
        if (ws == WIRE_BAD) {
            client_drop(c, "server %s sent bad bytes: %s: %s", c->server, wire_err_name(c->dec.err),
                        c->dec.reason);
            return;
        }
        if (ws == WIRE_FRAME)
            handle_frame(c);
        else if (used == 0)
            break;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    agent_client_t *c = req->handle->data;
    if (c->state != ST_CONNECTING)
        return; /* closing: the handle is on its way out */
    if (status != 0) {
        client_drop(c, "server %s unreachable (%s)", c->server, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        client_drop(c, "connection to server %s lost (%s)", c->server, uv_strerror(rc));
        return;
    }
    out_frame_t *f = frame_new(false);
    if (!f || wire_enc_hello(&f->b, &c->hello) != 0) {
        if (f)
            wire_buf_free(&f->b);
        tm_free(f);
        client_drop(c, "cannot encode the HELLO");
        return;
    }
    c->state = ST_HELLO;
    client_send(c, f);
}
