/*
 * One connection: bytes in, http-parser over them, requests queued in
 * arrival order and handed to their handlers, responses written in that
 * order, the request timer, and the two ways of ending (graceful: answer
 * what is queued, shut down, drop input for a while, close; hard: close
 * now). A socket-less connection (tm_http_mem_*) runs the same code with
 * its output kept in memory.
 */
#include "api/http_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

enum { EV_NONE, EV_HEADERS, EV_MESSAGE };

static const char continue_response[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ---- the queue ------------------------------------------------------------------- */

static void queue_push(tm_http_conn_t *c, tm_http_req_t *r)
{
    r->next = NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nqueue++;
}

static tm_http_req_t *queue_pop(tm_http_conn_t *c)
{
    tm_http_req_t *r = c->head;
    c->head = r->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->nqueue--;
    r->next = NULL;
    return r;
}

/* The request being received, made when the first byte of it arrives (or
 * for an error before any request began). */
static tm_http_req_t *conn_cur(tm_http_conn_t *c)
{
    if (c->cur == NULL) {
        c->cur = tm_http__req_new(c->srv, c);
        if (c->cur != NULL)
            queue_push(c, c->cur);
    }
    return c->cur;
}

/* ---- parser callbacks --------------------------------------------------------------- */

/* A callback's refusal: remember the status to answer, stop the parser. */
static int cb_fail(tm_http_conn_t *c, int rc)
{
    c->cb_status = rc == TM_ETOOBIG ? 431 : rc == -ENOMEM ? 500 : 400;
    return 1;
}

static int on_message_begin(http_parser *p)
{
    tm_http_conn_t *c = p->data;
    c->in_message = true;
    return conn_cur(c) ? 0 : cb_fail(c, -ENOMEM);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    tm_http_conn_t *c = p->data;
    int rc = tm_http__req_add_url(c->cur, at, len);
    return rc ? cb_fail(c, rc) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    tm_http_conn_t *c = p->data;
    int rc = tm_http__req_add_field(c->cur, at, len);
    return rc ? cb_fail(c, rc) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    tm_http_conn_t *c = p->data;
    int rc = tm_http__req_add_value(c->cur, at, len);
    return rc ? cb_fail(c, rc) : 0;
}

/* The checks need the whole head and may write: pause, do them outside. */
static int on_headers_complete(http_parser *p)
{
    tm_http_conn_t *c = p->data;
    c->event = EV_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    tm_http_conn_t *c = p->data;
    tm_http_req_t *r = c->cur;
    /* Content-Length was checked before; this catches a chunked body. */
    if (len > TM_HTTP_MAX_BODY - r->body_len) {
        c->cb_status = 413;
        return 1;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        uint8_t *b = tm_realloc(r->body, cap);
        if (b == NULL)
            return cb_fail(c, -ENOMEM);
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

/* Dispatching may reply and write: pause, do it outside. */
static int on_message_complete(http_parser *p)
{
    tm_http_conn_t *c = p->data;
    c->event = EV_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void tm_http__conn_init(tm_http_conn_t *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->in_headers = true;
}

/* ---- output ---------------------------------------------------------------------------- */

static void on_write(uv_write_t *w, int status)
{
    tm_http_req_t *r = w->data;
    tm_http_conn_t *c = r->conn;
    c->writing--;
    tm_http__req_free(r);
    if (status < 0) {
        tm_debug("api: %s: write failed: %s", c->peer, uv_strerror(status));
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    /* A slot in the queue is free: parse what waited for it, or end. */
    tm_http__conn_process(c);
}

static void on_write_continue(uv_write_t *w, int status)
{
    tm_http_conn_t *c = w->data;
    tm_free(w);
    c->writing--;
    if (status < 0)
        tm_http__conn_close_hard(c, NULL);
}

/* Socket-less output; false when out of memory. */
static bool mem_append(tm_http_conn_t *c, const char *buf, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        uint8_t *p = tm_realloc(c->out, cap);
        if (p == NULL)
            return false;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    return true;
}

/* Write r's response; r is freed here or in its write callback. false when
 * the connection was closed for it. */
static bool write_response(tm_http_conn_t *c, tm_http_req_t *r)
{
    if (c->mem) {
        bool ok = mem_append(c, r->out, r->out_len);
        tm_http__req_free(r);
        if (!ok)
            tm_http__conn_close_hard(c, "out of memory for the output");
        return ok;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    r->wreq.data = r;
    int rc = uv_write(&r->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        tm_http__req_free(r);
        tm_debug("api: %s: write failed: %s", c->peer, uv_strerror(rc));
        tm_http__conn_close_hard(c, NULL);
        return false;
    }
    c->writing++;
    return true;
}

/* "100 Continue" for a client waiting to send its body. */
static void write_continue(tm_http_conn_t *c)
{
    if (c->mem) {
        if (!mem_append(c, continue_response, sizeof continue_response - 1))
            tm_http__conn_close_hard(c, "out of memory for the output");
        return;
    }
    uv_write_t *w = tm_malloc(sizeof *w);
    if (w == NULL)
        return; /* the client sends its body anyway after a while */
    uv_buf_t b = uv_buf_init((char *)continue_response, sizeof continue_response - 1);
    w->data = c;
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write_continue) < 0) {
        tm_free(w);
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    c->writing++;
}

void tm_http__conn_flush(tm_http_conn_t *c)
{
    /* The request still being received waits: it is written once the
     * parser is done with it. */
    while (!c->closed && c->head != NULL && c->head->state == TM_HTTP_RS_REPLIED && c->head != c->cur) {
        tm_http_req_t *r = queue_pop(c);
        if (r->out == NULL) {
            tm_http__req_free(r);
            tm_http__conn_close_hard(c, "out of memory for a response");
            return;
        }
        if (!write_response(c, r))
            return;
    }
    if (!c->processing)
        tm_http__conn_process(c);
}

/* ---- ending --------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    tm_http_conn_t *c = h->data;
    if (--c->handles == 0)
        tm_http__server_conn_gone(c);
}

void tm_http__conn_close_hard(tm_http_conn_t *c, const char *why)
{
    if (c->closed)
        return;
    c->closed = true;
    if (why != NULL)
        tm_warn("api: %s: closing the connection: %s", c->peer, why);
    /* Requests with handlers stay valid until replied; the rest go now.
     * Responses being written are freed by their write callbacks. */
    for (tm_http_req_t *r = c->head, *next; r != NULL; r = next) {
        next = r->next;
        r->next = NULL;
        if (r->state == TM_HTTP_RS_HANDLER)
            r->conn = NULL;
        else
            tm_http__req_free(r);
    }
    c->head = c->tail = c->cur = NULL;
    c->nqueue = 0;
    if (c->mem)
        return;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    tm_http_conn_t *c = s->data;
    if (status < 0)
        tm_http__conn_close_hard(c, NULL);
}

/* Everything queued is written: shut down our side, then read and drop
 * what the client still sends (closing with unread input would reset the
 * connection and could destroy the last response in flight) until it
 * closes too or the linger time is over. */
static void conn_maybe_end(tm_http_conn_t *c)
{
    if (c->closed || !c->ending || c->lingering || c->head != NULL || c->writing > 0)
        return;
    if (c->mem) {
        c->closed = true;
        return;
    }
    if (c->eof) {
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    c->lingering = true;
    /* tm_http__conn_update starts the linger clock instead. */
    if (c->timer_on)
        uv_timer_stop(&c->timer);
    c->timer_on = false;
}

/* ---- input ---------------------------------------------------------------------------- */

/* The connection cannot go on (malformed input, a limit): answer the
 * request being received (or a new one) with an error after the responses
 * before it, then end. */
static void conn_fail(tm_http_conn_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conn_fail(tm_http_conn_t *c, int status, const char *code, const char *fmt, ...)
{
    tm_http_req_t *r = conn_cur(c);
    c->cur = NULL;
    c->in_message = false;
    c->ending = true;
    c->srv->stats.conns_dropped++;
    if (r == NULL) {
        tm_http__conn_close_hard(c, "out of memory for an error response");
        return;
    }
    r->keep_alive = false;
    if (r->state != TM_HTTP_RS_PARSING) {
        tm_http__conn_flush(c);
        return;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tm_http_reply_error(r, status, code, "%s", msg);
}

static void parse_failed(tm_http_conn_t *c, enum http_errno e)
{
    int st = c->cb_status;
    c->cb_status = 0;
    if (st == 431)
        conn_fail(c, 431, "headers-too-large", "the request line and headers are over %u bytes",
                  TM_HTTP_MAX_HEADER_BYTES);
    else if (st == 413)
        conn_fail(c, 413, "too-large", "the body is over %u bytes", TM_HTTP_MAX_BODY);
    else if (st == 500)
        conn_fail(c, 500, "internal", "out of memory for the request");
    else
        conn_fail(c, 400, "bad-request", "malformed HTTP: %s", http_errno_description(e));
}

static void headers_done(tm_http_conn_t *c)
{
    tm_http_req_t *r = c->cur;
    c->in_headers = false;
    /* http-parser pauses before it consumes the head's last LF. */
    c->hdr_bytes++;
    if (c->hdr_bytes > TM_HTTP_MAX_HEADER_BYTES) {
        c->cb_status = 431;
        parse_failed(c, HPE_OK);
        return;
    }
    c->hdr_bytes = 0;
    /* http-parser takes any digit; this server speaks 1.0 and 1.1. */
    if (c->parser.http_major != 1) {
        conn_fail(c, 400, "bad-request", "HTTP/%u.%u is not spoken here (HTTP/1.1 is)", c->parser.http_major,
                  c->parser.http_minor);
        return;
    }
    bool ok = tm_http__req_check_headers(r, &c->parser);
    if (c->closed)
        return;
    if (!ok) {
        /* Answered. With a body still to come, the connection ends here
         * (check_headers answered "Connection: close"); without one, the
         * message completes with the next byte and the connection goes on. */
        if (!r->keep_alive) {
            c->cur = NULL;
            c->in_message = false;
            c->ending = true;
            tm_http__conn_flush(c);
        }
        return;
    }
    const char *expect = tm_http_header(r, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && c->head == r &&
        (c->parser.http_major > 1 || c->parser.http_minor >= 1))
        write_continue(c);
}

static void message_done(tm_http_conn_t *c)
{
    tm_http_req_t *r = c->cur;
    c->cur = NULL;
    c->in_message = false;
    c->in_headers = true;
    c->hdr_bytes = 0;
    if (r == NULL)
        return;
    if (!r->keep_alive)
        c->ending = true;
    if (r->state == TM_HTTP_RS_PARSING && tm_http__req_check_body(r)) {
        r->state = TM_HTTP_RS_HANDLER;
        r->held = true;
        c->srv->held++;
        /* r may be replied to, written and freed before this returns. */
        r->route->handler(r, r->route->ctx);
        return;
    }
    tm_http__conn_flush(c);
}

/* One run of the parser over the staging buffer, up to its next event. */
static void parse_step(tm_http_conn_t *c)
{
    bool in_head = c->in_headers;
    size_t avail = c->rlen - c->rpos;
    /* Never more than one byte past the limit into a head: the check after
     * this step catches it without the parser holding more. */
    if (in_head && avail > TM_HTTP_MAX_HEADER_BYTES + 1 - c->hdr_bytes)
        avail = TM_HTTP_MAX_HEADER_BYTES + 1 - c->hdr_bytes;
    size_t n = http_parser_execute(&c->parser, &settings, (const char *)c->rbuf + c->rpos, avail);
    c->rpos += n;
    if (in_head)
        c->hdr_bytes += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        int ev = c->event;
        c->event = EV_NONE;
        if (ev == EV_HEADERS)
            headers_done(c);
        else if (ev == EV_MESSAGE)
            message_done(c);
        return;
    }
    if (e != HPE_OK) {
        parse_failed(c, e);
        return;
    }
    if (in_head && c->hdr_bytes > TM_HTTP_MAX_HEADER_BYTES) {
        c->cb_status = 431;
        parse_failed(c, HPE_OK);
    } else if (n == 0) {
        /* No progress without an error: never seen, but never loop on it. */
        conn_fail(c, 400, "bad-request", "malformed HTTP");
    }
}

static bool can_parse(const tm_http_conn_t *c)
{
    /* The request being received is in the queue; the limit is on those
     * waiting besides it. */
    unsigned waiting = c->nqueue - (c->cur != NULL);
    return !c->closed && !c->ending && c->rpos < c->rlen && waiting < TM_HTTP_MAX_PIPELINE;
}

void tm_http__conn_process(tm_http_conn_t *c)
{
    if (c->processing || c->closed)
        return;
    c->processing = true;
    while (can_parse(c))
        parse_step(c);
    if (!c->closed && !c->ending && c->eof && c->rpos == c->rlen) {
        if (c->in_message)
            conn_fail(c, 400, "bad-request", "the client ended the connection in the middle of a request");
        else
            c->ending = true;
    }
    if (!c->closed) {
        /* Keep the unparsed bytes at the start, for the next read. */
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        tm_http__conn_flush(c);
    }
    c->processing = false;
    if (!c->closed) {
        conn_maybe_end(c);
        tm_http__conn_update(c);
    }
}

size_t tm_http__conn_input(tm_http_conn_t *c, const uint8_t *data, size_t len)
{
    size_t taken = 0;
    while (taken < len) {
        if (c->closed || c->ending || c->eof)
            return len; /* nothing more is read: dropped, as the kernel would */
        size_t room = sizeof c->rbuf - c->rlen;
        if (room == 0)
            break;
        size_t n = len - taken < room ? len - taken : room;
        memcpy(c->rbuf + c->rlen, data + taken, n);
        c->rlen += n;
        taken += n;
        tm_http__conn_process(c);
    }
    return taken;
}

void tm_http__conn_eof(tm_http_conn_t *c)
{
    c->eof = true;
    tm_http__conn_process(c);
}

/* ---- socket reading and the timer ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    tm_http_conn_t *c = h->data;
    if (c->lingering)
        *buf = uv_buf_init((char *)c->rbuf, sizeof c->rbuf); /* dropped */
    else
        *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(sizeof c->rbuf - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    tm_http_conn_t *c = s->data;
    if (nread == 0 || nread == UV_ENOBUFS)
        return;
    if (c->lingering) {
        if (nread < 0)
            tm_http__conn_close_hard(c, NULL);
        return;
    }
    if (nread == UV_EOF) {
        tm_http__conn_eof(c);
        return;
    }
    if (nread < 0) {
        tm_debug("api: %s: read failed: %s", c->peer, uv_strerror((int)nread));
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    c->rlen += (size_t)nread;
    tm_http__conn_process(c);
}

static void on_timer(uv_timer_t *t)
{
    tm_http_conn_t *c = t->data;
    c->timer_on = false;
    if (c->lingering) {
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    if (c->in_message) {
        c->srv->stats.conns_dropped++;
        tm_warn("api: %s: no complete request within %u ms; closing the connection", c->peer, c->srv->timeout_ms);
    } else {
        tm_debug("api: %s: idle for %u ms; closing the connection", c->peer, c->srv->timeout_ms);
    }
    tm_http__conn_close_hard(c, NULL);
}

void tm_http__conn_update(tm_http_conn_t *c)
{
    if (c->mem || c->closed)
        return;
    bool want_read = c->lingering || (!c->eof && !c->ending && c->rlen < sizeof c->rbuf);
    if (want_read && !c->reading)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    else if (!want_read && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    /* The clock runs while the server waits for the client: between
     * requests with nothing queued, and inside a request; not while
     * handlers work. Lingering has a clock of its own. */
    uint64_t ms = c->lingering ? TM_HTTP_LINGER_MS : c->srv->timeout_ms;
    bool want_timer = c->lingering || c->in_message || c->nqueue == 0;
    if (want_timer && !c->timer_on) {
        uv_timer_start(&c->timer, on_timer, ms, 0);
        c->timer_on = true;
    } else if (!want_timer && c->timer_on) {
        uv_timer_stop(&c->timer);
        c->timer_on = false;
    }
}
