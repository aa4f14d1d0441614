/*
 * The server side of ingest: listening, connections and their lifetimes,
 * reading with a bounded number of frames per turn, writing frames, the
 * error-then-close path, journal completions handed to the loop, and the
 * global budget. What a frame means is session.c's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/addr.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"

typedef struct ig_write {
    uv_write_t req;
    ig_conn_t *c;
    uint8_t data[];
} ig_write_t;


static void ig__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void ig__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void ig__idle_kick(ingest_t *ig);

/* ---- naming ----------------------------------------------------------- */

const char *ig_conn_who(const ig_conn_t *c, char *buf, size_t len)
{
    const char *name = c->m ? c->m->name : c->hello ? c->hello->machine : NULL;
    if (name && name[0])
        snprintf(buf, len, "agent %s (machine %s)", c->peer, name);
    else
        snprintf(buf, len, "agent %s", c->peer);
    return buf;
}

static void ig__sockname(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, host, sizeof host);
        snprintf(buf, len, "%s:%d", host, ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, host, sizeof host);
        snprintf(buf, len, "[%s]:%d", host, ntohs(a->sin6_port));
    } else {
        snprintf(buf, len, "unknown peer");
    }
}

/* "HOST:PORT" or "[V6]:PORT" with a numeric host (or localhost). 0 or TM_EINVAL. */
/* ---- reading ------------------------------------------------------------ */

static bool ig__runnable(const ig_conn_t *c)
{
    return !(c->ig->paused && c->state == IG_ST_STREAM);
}

void ig_conn_update_reading(ig_conn_t *c)
{
    if (c->state == IG_ST_CLOSED)
        return;
    bool want = !c->on_ready && ig__runnable(c);
    if (want == c->reading)
        return;
    c->reading = want;
    if (want) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, ig__alloc_cb, ig__read_cb);
        if (rc) {
            char who[160];
            tm_warn("ingest: %s: cannot read: %s", ig_conn_who(c, who, sizeof who), uv_strerror(rc));
            c->reading = false;
            ig_conn_close(c);
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void ig__ready_unlink(ig_conn_t *c)
{
    if (!c->on_ready)
        return;
    if (c->ready_prev)
        c->ready_prev->ready_next = c->ready_next;
    else
        c->ig->ready = c->ready_next;
    if (c->ready_next)
        c->ready_next->ready_prev = c->ready_prev;
    c->ready_next = c->ready_prev = NULL;
    c->on_ready = false;
}

static void ig__ready_link(ig_conn_t *c)
{
    if (c->on_ready)
        return;
    c->ready_prev = NULL;
    c->ready_next = c->ig->ready;
    if (c->ig->ready)
        c->ig->ready->ready_prev = c;
    c->ig->ready = c;
    c->on_ready = true;
}

static void ig__pend_free(ig_conn_t *c)
{
    tm_free(c->pend);
    c->pend = NULL;
    c->pend_off = c->pend_len = 0;
    ig__ready_unlink(c);
}

/* Give a streaming session a big body buffer from the pool, so busy agents
 * reuse a few buffers instead of each keeping (or re-faulting) its own. */
static void ig__body_attach(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    if (c->state != IG_ST_STREAM || c->dec.in_body || c->dec.body_cap >= WIRE_MAX_BODY || ig->npool == 0)
        return;
    tm_free(c->dec.body);
    c->dec.body = ig->pool[--ig->npool];
    c->dec.body_cap = WIRE_MAX_BODY;
}

/* Between frames a big body buffer goes back to the pool (or is freed), so
 * an idle connection holds no more than a small one. */
static void ig__body_detach(ig_conn_t *c)
{
    ingest_t *ig = c->ig;
    if (c->dec.in_body || c->dec.body_cap <= IG_SMALL_BODY)
        return;
    if (c->dec.body_cap == WIRE_MAX_BODY && ig->npool < IG_BODY_POOL && !ig->stopping)
        ig->pool[ig->npool++] = c->dec.body;
    else
        tm_free(c->dec.body);
    c->dec.body = NULL;
    c->dec.body_cap = 0;
}

/* Decode at most a turn's worth of frames from p; returns the bytes used
 * (all of them once the session has failed). */
static size_t ig__feed(ig_conn_t *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    unsigned frames = 0;
    while (off < n && c->state < IG_ST_LINGER && frames < INGEST_FRAMES_PER_TURN && ig__runnable(c)) {
        ig__body_attach(c);
        size_t used = 0;
        wire_status_t st = wire_decode(&c->dec, p + off, n - off, &used);
        off += used;
        if (st == WIRE_BAD) {
            ig_conn_fail(c, c->dec.err, "%s", c->dec.reason);
            break;
        }
        if (st == WIRE_FRAME) {
            frames++;
            ig_conn_frame(c);
        }
    }
    if (c->state < IG_ST_LINGER)
        ig__body_detach(c);
    return c->state >= IG_ST_LINGER ? n : off;
}

static void ig__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    ig_conn_t *c = h->data;
    ingest_t *ig = c->ig;
    /* libuv calls alloc and read back to back, so one buffer serves all. */
    if (ig->readbuf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    ig->readbuf_busy = true;
    buf->base = (char *)ig->readbuf;
    buf->len = IG_READ_BUF;
}

static void ig__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ig_conn_t *c = s->data;
    ingest_t *ig = c->ig;
    char who[160];
    if (buf->base == (char *)ig->readbuf)
        ig->readbuf_busy = false;

    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        tm_error("ingest: %s: read buffer in use (bug)", ig_conn_who(c, who, sizeof who));
        ig_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (c->state == IG_ST_LINGER) {
            ig_conn_close(c);
            return;
        }
        if (nread == UV_EOF && (c->dec.hdr_have || c->dec.in_body)) {
            /* The agent may have only shut down its side: it can still read why. */
            ig_conn_fail(c, WIRE_E_PROTOCOL, "the connection ended inside a frame (%zu of %u body bytes)",
                         c->dec.in_body ? c->dec.body_have : 0, c->dec.in_body ? c->dec.hdr.body_len : 0);
            uv_read_stop(s);
            c->reading = false;
            return;
        }
        if (nread == UV_EOF)
            tm_info("ingest: %s disconnected", ig_conn_who(c, who, sizeof who));
        else
            tm_warn("ingest: %s: %s", ig_conn_who(c, who, sizeof who), uv_strerror((int)nread));
        ig_conn_close(c);
        return;
    }
    if (c->state >= IG_ST_LINGER)
        return; /* draining after an error */

    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    if (c->pend) {
        /* Should not happen (reading stops while bytes are pending); keep order anyway. */
        uint8_t *grown = tm_realloc(c->pend, c->pend_len + n);
        if (!grown) {
            ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
            return;
        }
        memcpy(grown + c->pend_len, p, n);
        c->pend = grown;
        c->pend_len += n;
        return;
    }
    size_t used = ig__feed(c, p, n);
    if (used < n && c->state < IG_ST_LINGER) {
        c->pend = tm_malloc(n - used);
        if (!c->pend) {
            ig_conn_fail(c, WIRE_E_INTERNAL, "out of memory");
            return;
        }
        memcpy(c->pend, p + used, n - used);
        c->pend_off = 0;
        c->pend_len = n - used;
        ig__ready_link(c);
        ig__idle_kick(ig);
    }
    ig_conn_update_reading(c);
}

static void ig__idle_cb(uv_idle_t *h)
{
    ingest_t *ig = h->data;
    bool progress = false;
    ig_conn_t *next;
    for (ig_conn_t *c = ig->ready; c; c = next) {
        next = c->ready_next;
        /* A session replaced by another's handshake (session.c) left the
         * list while the one before it was fed: its ready_next is NULL and
         * the rest waits for the next turn. */
        if (!c->on_ready || !ig__runnable(c))
            continue;
        progress = true;
        size_t used = ig__feed(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (c->state >= IG_ST_LINGER)
            continue; /* ig_conn_fail dropped the pending bytes */
        c->pend_off += used;
        if (c->pend_off == c->pend_len) {
            ig__pend_free(c);
            ig_conn_update_reading(c);
        }
    }
    if (!progress || !ig->ready)
        uv_idle_stop(&ig->idle);
}

/* Run the idle handle while some connection has pending bytes it may work on. */
static void ig__idle_kick(ingest_t *ig)
{
    if (ig->ready && !ig->stopping && !uv_is_active((uv_handle_t *)&ig->idle))
        uv_idle_start(&ig->idle, ig__idle_cb);
}

/* ---- writing ------------------------------------------------------------ */

static void ig__shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    tm_free(req);
}

static void ig__write_cb(uv_write_t *req, int status)
{
    ig_write_t *w = (ig_write_t *)req;
    ig_conn_t *c = w->c;
    tm_free(w);
    c->writes--;
    if (c->state == IG_ST_CLOSED)
        return;
    if (status < 0) {
        if (c->state != IG_ST_LINGER) {
            char who[160];
            tm_warn("ingest: %s: write: %s", ig_conn_who(c, who, sizeof who), uv_strerror(status));
        }
        ig_conn_close(c);
        return;
    }
    if (c->state == IG_ST_LINGER && c->writes == 0) {
        /* The ERROR is out: say we are done, then wait (bounded) for the
         * agent to close, so it reads the error before any reset. */
        if (!c->reading) {
            ig_conn_close(c);
            return;
        }
        uv_shutdown_t *sd = tm_malloc(sizeof *sd);
        if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, ig__shutdown_cb) != 0) {
            tm_free(sd);
            ig_conn_close(c);
        }
    }
}

int ig_conn_send(ig_conn_t *c, const wire_buf_t *b)
{
    if (c->state == IG_ST_CLOSED)
        return TM_ECLOSED;
    if (b->oom)
        return -ENOMEM;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > IG_MAX_WRITE_QUEUE) {
        char who[160];
        tm_warn("ingest: %s does not read what the server sends; closing", ig_conn_who(c, who, sizeof who));
        ig_conn_close(c);
        return TM_ECLOSED;
    }
    ig_write_t *w = tm_malloc(sizeof *w + b->len);
    if (!w)
        return -ENOMEM;
    w->c = c;
    memcpy(w->data, b->data, b->len);
    uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)b->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, ig__write_cb);
    if (rc) {
        tm_free(w);
        return rc;
    }
    c->writes++;
    return 0;
}

/* ---- failing and closing ------------------------------------------------ */

/* Drop the session's hold on its machine and everything only a live
 * session needs. */
static void ig__conn_release(ig_conn_t *c)
{
    if (c->m && c->m->conn == c) {
        ig_group_conn_gone(c->m, c);
        c->m->conn = NULL;
    }
    c->m = NULL;
    ig_resync_release(c);
    ig__pend_free(c);
    tm_free(c->hello);
    c->hello = NULL;
    wire_decoder_free(&c->dec);
}

void ig_conn_fail(ig_conn_t *c, int code, const char *fmt, ...)
{
    char reason[WIRE_MAX_TEXT + 1];
    char who[160];
    wire_buf_t b = {0};
    va_list ap;

    if (c->state >= IG_ST_LINGER)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    tm_warn("ingest: %s: %s: %s", ig_conn_who(c, who, sizeof who), wire_err_name(code), reason);

    ig__conn_release(c);
    c->state = IG_ST_LINGER;
    c->deadline_ns = tm_mono_ns() + (uint64_t)INGEST_LINGER_MS * 1000000u;
    if (wire_enc_error(&b, (uint16_t)code, reason) != 0 || ig_conn_send(c, &b) != 0) {
        wire_buf_free(&b);
        ig_conn_close(c);
        return;
    }
    wire_buf_free(&b);
    ig_conn_update_reading(c);
}

static void ig_conn_closed(uv_handle_t *h)
{
    ig_conn_t *c = h->data;
    ingest_t *ig = c->ig;
    if (c->prev)
        c->prev->next = c->next;
    else
        ig->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ig->nconns--;
    tm_free(c);
    ig_maybe_stopped(ig);
}

void ig_conn_close(ig_conn_t *c)
{
    if (c->state == IG_ST_CLOSED)
        return;
    ig__conn_release(c);
    c->state = IG_ST_CLOSED;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, ig_conn_closed);
}

/* ---- accepting ------------------------------------------------------------ */

static void ig__on_connection(uv_stream_t *server, int status)
{
    ingest_t *ig = server->data;
    if (status < 0) {
        tm_warn("ingest: accept: %s", uv_strerror(status));
        return;
    }
    ig_conn_t *c = tm_calloc(1, sizeof *c);
    if (!c) {
        tm_warn("ingest: out of memory for a new connection");
        return;
    }
    c->ig = ig;
    c->gen = ++ig->next_gen;
    wire_decoder_init(&c->dec);
    int rc = uv_tcp_init(ig->loop, &c->tcp);
    if (rc) {
        tm_warn("ingest: accept: %s", uv_strerror(rc));
        tm_free(c);
        return;
    }
    c->tcp.data = c;
    c->next = ig->conns;
    if (ig->conns)
        ig->conns->prev = c;
    ig->conns = c;
    ig->nconns++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc) {
        tm_warn("ingest: accept: %s", uv_strerror(rc));
        ig_conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        ig__sockname(&ss, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "unknown peer");
    uv_tcp_nodelay(&c->tcp, 1);
    /* A peer that vanished without a FIN holds its connection until this
     * notices: 60 s idle, then 6 probes 10 s apart (libuv before 1.49 sets
     * only the idle time, leaving the system's 9 x 75 s). Its machine does
     * not wait for that: a new session replaces it (session.c). */
    uv_tcp_keepalive(&c->tcp, 1, IG_KEEPALIVE_IDLE_S);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        int intvl = IG_KEEPALIVE_INTVL_S, cnt = IG_KEEPALIVE_PROBES;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    c->state = IG_ST_HELLO;
    c->deadline_ns = tm_mono_ns() + (uint64_t)ig->handshake_ms * 1000000u;
    ig_conn_update_reading(c);
}

/* ---- journal completions and the budget ------------------------------------ */

void ig_budget_add(ingest_t *ig, uint32_t bytes)
{
    ig->inflight++;
    ig->queued_bytes += bytes;
    if (!ig->paused && ig->queued_bytes > ig->budget) {
        ig->paused = true;
        tm_debug("ingest: %" PRIu64 " bytes queued in the journal, over the budget: reads paused",
                 ig->queued_bytes);
        for (ig_conn_t *c = ig->conns; c; c = c->next)
            ig_conn_update_reading(c);
    }
}

static void ig__budget_done(ingest_t *ig)
{
    if (ig->paused && ig->queued_bytes <= ig->budget / 2) {
        ig->paused = false;
        tm_debug("ingest: journal queue down to %" PRIu64 " bytes: reads resumed", ig->queued_bytes);
        for (ig_conn_t *c = ig->conns; c; c = c->next)
            ig_conn_update_reading(c);
        ig__idle_kick(ig);
    }
}

static void ig__async_cb(uv_async_t *h)
{
    ingest_t *ig = h->data;
    pthread_mutex_lock(&ig->mu);
    ig_append_t *a = ig->done_head;
    ig->done_head = ig->done_tail = NULL;
    pthread_mutex_unlock(&ig->mu);

    while (a) {
        ig_append_t *next = a->next;
        ig_machine_t *m = a->m;
        ig->inflight--;
        ig->queued_bytes -= a->bytes;
        m->inflight--;
        ig_conn_append_done(a);
        tm_free(a);
        if (m->inflight == 0)
            ig_conn_settled(m);
        a = next;
    }
    /* One ACK per machine per turn, however many batches became durable. */
    wire_buf_t b = {0};
    for (ig_machine_t *m = ig->ack_list; m;) {
        ig_machine_t *next = m->ack_next;
        m->ack_due = false;
        m->ack_next = NULL;
        if (m->conn && m->conn->state == IG_ST_STREAM) {
            wire_buf_reset(&b);
            if (wire_enc_ack(&b, m->durable_seq) != 0 || ig_conn_send(m->conn, &b) != 0)
                ig_conn_fail(m->conn, WIRE_E_INTERNAL, "cannot send an acknowledgement");
        }
        m = next;
    }
    ig->ack_list = NULL;
    wire_buf_free(&b);
    ig__budget_done(ig);
    ig_maybe_stopped(ig);
}

/* ---- the sweep: handshake and linger deadlines ------------------------------ */

static void ig__sweep_cb(uv_timer_t *h)
{
    ingest_t *ig = h->data;
    uint64_t now = tm_mono_ns();
    for (ig_conn_t *c = ig->conns; c; c = c->next) {
        if (!c->deadline_ns || now < c->deadline_ns)
            continue;
        if (c->state == IG_ST_LINGER) {
            ig_conn_close(c);
        } else if (c->state == IG_ST_HELLO || c->state == IG_ST_AUTH) {
            ig_conn_fail(c, WIRE_E_PROTOCOL, "handshake timeout: no %s within %u ms of connecting",
                         c->state == IG_ST_HELLO ? "HELLO" : "AUTH", ig->handshake_ms);
        }
    }
}

/* ---- start and stop ----------------------------------------------------------- */

static void ig__free(ingest_t *ig)
{
    for (unsigned i = 0; i < ig->npool; i++)
        tm_free(ig->pool[i]);
    ig_group_free(ig);
    ig_machines_free(ig);
    ig_retired_free(ig);
    ingest_registry_free(&ig->reg);
    pthread_mutex_destroy(&ig->mu);
    tm_free(ig->readbuf);
    tm_free(ig->recs);
    tm_free(ig->scratch);
    tm_free(ig->data_dir);
    tm_free(ig);
}

static void ig__handle_closed(uv_handle_t *h)
{
    ingest_t *ig = h->data;
    ig->open_handles--;
    ig_maybe_stopped(ig);
}

void ig_maybe_stopped(ingest_t *ig)
{
    /* A provider's call still running refers to ig: wait for its done. */
    if (!ig->stopping || ig->nconns || ig->sums_inflight)
        return;
    if (ig->inflight == 0 && !uv_is_closing((uv_handle_t *)&ig->async)) {
        uv_close((uv_handle_t *)&ig->async, ig__handle_closed);
        return;
    }
    if (ig->open_handles == 0) {
        ingest_stopped_cb cb = ig->stopped_cb;
        void *arg = ig->stopped_arg;
        /* Group rounds' answers still owed (the sessions' ends made them):
         * each is delivered once, before anything is freed. */
        ig_group_flush(ig);
        ig__free(ig);
        if (cb)
            cb(arg);
    }
}

void ingest_stop(ingest_t *ig, ingest_stopped_cb cb, void *arg)
{
    ig->stopping = true;
    ig->stopped_cb = cb;
    ig->stopped_arg = arg;
    /* Every handle is closed here, so ig_maybe_stopped can only finish from a
     * close callback: cb never runs inside this call. */
    uv_close((uv_handle_t *)&ig->listener, ig__handle_closed);
    uv_close((uv_handle_t *)&ig->idle, ig__handle_closed);
    uv_close((uv_handle_t *)&ig->sweep, ig__handle_closed);
    uv_close((uv_handle_t *)&ig->grp_timer, ig__handle_closed);
    for (ig_conn_t *c = ig->conns; c; c = c->next)
        ig_conn_close(c);
    if (ig->inflight == 0)
        uv_close((uv_handle_t *)&ig->async, ig__handle_closed);
}

void ingest_address(const ingest_t *ig, char *buf, size_t len)
{
    snprintf(buf, len, "%s", ig->addr);
}

int ingest_start(uv_loop_t *loop, jnl_t *jnl, const ingest_options_t *opts, ingest_t **out, char *err,
                 size_t errlen)
{
    struct sockaddr_storage ss;
    int rc;

    if (tm_addr_parse(opts->listen, &ss) != 0) {
        snprintf(err, errlen, "'%s' is not an address to listen on (HOST:PORT or [V6]:PORT, numeric host)",
                 opts->listen);
        return TM_EINVAL;
    }
    ingest_t *ig = tm_calloc(1, sizeof *ig);
    if (!ig)
        goto out_oom;
    pthread_mutex_init(&ig->mu, NULL);
    ig->loop = loop;
    ig->jnl = jnl;
    ig->window = opts->window_bytes ? opts->window_bytes : INGEST_DEFAULT_WINDOW;
    ig->budget = opts->budget_bytes ? opts->budget_bytes : INGEST_DEFAULT_BUDGET;
    ig->handshake_ms = opts->handshake_ms ? opts->handshake_ms : INGEST_HANDSHAKE_MS;
    if (opts->resync && opts->resync->sums) {
        ig->provider = *opts->resync;
        ig->has_provider = true;
    }
    snprintf(ig->server_id, sizeof ig->server_id, "%s", opts->server_id ? opts->server_id : "tidemark");
    ig->data_dir = tm_strdup(opts->data_dir);
    ig->readbuf = tm_malloc(IG_READ_BUF);
    ig->recs = tm_malloc(sizeof *ig->recs);
    if (!ig->data_dir || !ig->readbuf || !ig->recs) {
        ig__free(ig);
        goto out_oom;
    }
    rc = ig_rebuild(ig, opts, err, errlen);
    if (rc == 0)
        rc = ig_retired_init(ig, opts, err, errlen);
    if (rc) {
        ig__free(ig);
        return rc;
    }
    char rerr[512];
    rc = ingest_registry_load(ig->data_dir, &ig->reg, rerr, sizeof rerr);
    if (rc) {
        /* Not fatal: machines already registered cannot connect until the
         * file is fixed, which the next hello notices. */
        tm_warn("ingest: machine registry: %s", rerr);
        ig->reg_bad = true;
    }

    /* From here on handles exist and cleanup goes through uv_close. */
    uv_tcp_init(loop, &ig->listener);
    uv_async_init(loop, &ig->async, ig__async_cb);
    uv_idle_init(loop, &ig->idle);
    uv_timer_init(loop, &ig->sweep);
    uv_timer_init(loop, &ig->grp_timer);
    ig->listener.data = ig->async.data = ig->idle.data = ig->sweep.data = ig->grp_timer.data = ig;
    ig->open_handles = 5;

    rc = uv_tcp_bind(&ig->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ig->listener, 1024, ig__on_connection);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", opts->listen, uv_strerror(rc));
        goto out_stop;
    }
    int len = sizeof ss;
    rc = uv_tcp_getsockname(&ig->listener, (struct sockaddr *)&ss, &len);
    if (rc) {
        snprintf(err, errlen, "getsockname: %s", uv_strerror(rc));
        goto out_stop;
    }
    ig__sockname(&ss, ig->addr, sizeof ig->addr);
    /* A deadline is noticed at most one period late: a short handshake
     * timeout (tests) sweeps more often. */
    uint64_t period = ig->handshake_ms < 1000 ? ig->handshake_ms : 1000;
    uv_timer_start(&ig->sweep, ig__sweep_cb, period, period);
    *out = ig;
    return 0;

out_stop:
    /* Nothing is connected and nothing appended: this finishes in the close
     * callbacks of the next loop run, which the caller does. */
    ingest_stop(ig, NULL, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return rc;

out_oom:
    snprintf(err, errlen, "%s", tm_strerror(-ENOMEM));
    return -ENOMEM;
}
