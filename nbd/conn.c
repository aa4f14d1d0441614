/*
 * One connection: reading into the staging buffer, the decoder for the
 * handshake and transmission phases, handshake output, and closing.
 */
#include "nbd/server_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

/* The client broke the protocol: say why, count it, close hard. */
void nbd__conn_log_drop(nbd_conn_t *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    tm_warn("nbd: %s: %s; closing the connection", c->peer, why);
    c->srv->stats.conns_dropped++;
    nbd__conn_close(c, false);
}

static void on_out_written(uv_write_t *w, int status)
{
    nbd_out_t *o = nbd__container_of(w, nbd_out_t, wreq);
    nbd_conn_t *c = o->conn;
    tm_free(o);
    if (status < 0 && status != UV_ECANCELED) {
        tm_debug("nbd: %s: write failed: %s", c->peer, uv_strerror(status));
        nbd__conn_close(c, false);
    }
}

/* Queue handshake bytes: up to three pieces copied into one write. */
void nbd__conn_send(nbd_conn_t *c, const void *a, size_t alen, const void *b, size_t blen, const void *d,
                      size_t dlen)
{
    if (c->closing && !c->graceful)
        return;
    nbd_out_t *o = tm_malloc(sizeof *o + alen + blen + dlen);
    if (o == NULL) {
        tm_error("nbd: %s: out of memory for a reply; closing the connection", c->peer);
        nbd__conn_close(c, false);
        return;
    }
    o->conn = c;
    if (alen)
        memcpy(o->bytes, a, alen);
    if (blen)
        memcpy(o->bytes + alen, b, blen);
    if (dlen)
        memcpy(o->bytes + alen + blen, d, dlen);
    uv_buf_t buf = uv_buf_init((char *)o->bytes, (unsigned)(alen + blen + dlen));
    int rc = uv_write(&o->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_out_written);
    if (rc < 0) {
        tm_free(o);
        tm_debug("nbd: %s: write failed: %s", c->peer, uv_strerror(rc));
        nbd__conn_close(c, false);
    }
}

/* One option reply; text replies (errors) are cut at NBD_MAX_NAME bytes. */
void nbd__conn_opt_reply(nbd_conn_t *c, uint32_t opt, uint32_t type, const void *data, size_t len)
{
    uint8_t hdr[NBD_OPT_REPLY_HDR_LEN];
    nbd_proto_put_opt_reply_hdr(hdr, opt, type, (uint32_t)len);
    nbd__conn_send(c, hdr, sizeof hdr, data, len, NULL, 0);
}

void nbd__conn_opt_error(nbd_conn_t *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
    char msg[NBD_MAX_NAME + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n;
    nbd__conn_opt_reply(c, opt, type, msg, len);
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    nbd_conn_t *c = h->data;
    /* A large WRITE payload goes straight into its request once the staging
     * buffer is empty: one copy fewer for the bulk of the data. */
    if (c->state == NBD_ST_REQ_DATA && c->rpos == c->rlen) {
        nbd_req_t *r = c->cur;
        *buf = uv_buf_init((char *)r->payload + r->got, r->io.length - r->got);
        return;
    }
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    /* A full buffer gives a zero-length one: libuv then reports UV_ENOBUFS
     * and on_read stops reading until the decoder catches up. */
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(NBD_RBUF_SIZE - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void nbd__conn_update_reading(nbd_conn_t *c)
{
    bool want = !c->closing && !c->eof && c->state != NBD_ST_END && c->rlen - c->rpos < NBD_RBUF_SIZE;
    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc < 0) {
            tm_warn("nbd: %s: cannot read: %s; closing the connection", c->peer, uv_strerror(rc));
            nbd__conn_close(c, false);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    nbd_conn_t *c = s->data;
    if (nread > 0) {
        if (c->state == NBD_ST_REQ_DATA && buf->base == (char *)c->cur->payload + c->cur->got)
            c->cur->got += (uint32_t)nread;
        else
            c->rlen += (size_t)nread;
        nbd__conn_process(c);
    } else if (nread == UV_EOF) {
        c->eof = true;
        nbd__conn_process(c);
    } else if (nread == UV_ENOBUFS) {
        uv_read_stop(s);
        c->reading = false;
    } else if (nread < 0) {
        tm_debug("nbd: %s: read failed: %s", c->peer, uv_strerror((int)nread));
        nbd__conn_close(c, false);
    }
}

/* ---- the decoder ----------------------------------------------------------- */

/*
 * Decode what is buffered, up to NBD_DECODE_BUDGET options or requests; then
 * yield to the other connections. Stops early while the backend holds an
 * open or listing, or while the connection has its fill of requests in
 * flight (nbd__req_free resumes it).
 */
void nbd__conn_process(nbd_conn_t *c)
{
    unsigned budget = NBD_DECODE_BUDGET;
    while (!c->closing) {
        size_t avail = c->rlen - c->rpos;
        const uint8_t *p = c->rbuf + c->rpos;
        size_t n;
        switch (c->state) {
        case NBD_ST_FLAGS: {
            if (avail < NBD_CLIENT_FLAGS_LEN)
                goto need_more;
            uint32_t flags = tm_get_be32(p);
            c->rpos += NBD_CLIENT_FLAGS_LEN;
            if (flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
                nbd__conn_log_drop(c, "unknown client flags 0x%08x", flags);
                return;
            }
            c->no_zeroes = (flags & NBD_FLAG_C_NO_ZEROES) != 0;
            c->state = NBD_ST_OPT_HDR;
            break;
        }
        case NBD_ST_OPT_HDR:
            if (budget == 0)
                goto yield;
            if (avail < NBD_OPT_HDR_LEN)
                goto need_more;
            nbd_proto_get_opt_hdr(p, &c->opt);
            c->rpos += NBD_OPT_HDR_LEN;
            if (c->opt.magic != NBD_IHAVEOPT) {
                nbd__conn_log_drop(c, "bad option magic 0x%016llx", (unsigned long long)c->opt.magic);
                return;
            }
            if (c->opt.len > NBD_MAX_OPTION) {
                if (c->opt.opt == NBD_OPT_EXPORT_NAME) {
                    nbd__conn_log_drop(c, "NBD_OPT_EXPORT_NAME of %u bytes", c->opt.len);
                    return;
                }
                /* Reading on would mean swallowing up to 4 GiB the client
                 * should never have sent: answer, then end the session. */
                tm_warn("nbd: %s: %s of %u bytes is over the %u-byte limit; closing the connection", c->peer,
                        nbd_proto_opt_name(c->opt.opt), c->opt.len, NBD_MAX_OPTION);
                c->srv->stats.conns_dropped++;
                nbd__conn_opt_error(c, c->opt.opt, NBD_REP_ERR_TOO_BIG, "option data over %u bytes", NBD_MAX_OPTION);
                c->state = NBD_ST_END;
                nbd__conn_close(c, true);
                return;
            }
            c->opt_got = 0;
            if (c->opt.len > 0) {
                c->opt_data = tm_malloc(c->opt.len);
                if (c->opt_data == NULL) {
                    tm_error("nbd: %s: out of memory for an option; closing the connection", c->peer);
                    nbd__conn_close(c, false);
                    return;
                }
            }
            c->state = NBD_ST_OPT_DATA;
            break;
        case NBD_ST_OPT_DATA:
            n = c->opt.len - c->opt_got;
            if (n > avail)
                n = avail;
            if (n > 0) {
                memcpy(c->opt_data + c->opt_got, p, n);
                c->opt_got += (uint32_t)n;
                c->rpos += n;
            }
            if (c->opt_got < c->opt.len)
                goto need_more;
            budget--;
            nbd__conn_option(c);
            break;
        case NBD_ST_OPT_WAIT:
            goto out;
        case NBD_ST_END:
            c->rpos = c->rlen; /* nothing may follow DISC or ABORT */
            goto out;
        case NBD_ST_REQ_HDR: {
            if (budget == 0)
                goto yield;
            if (c->inflight >= NBD_CONN_MAX_INFLIGHT || c->inflight_bytes >= NBD_CONN_MAX_INFLIGHT_BYTES) {
                c->paused = true;
                goto out;
            }
            if (avail < NBD_REQ_HDR_LEN)
                goto need_more;
            nbd_req_hdr_t h;
            nbd_proto_get_req_hdr(p, &h);
            c->rpos += NBD_REQ_HDR_LEN;
            budget--;
            nbd__conn_request(c, &h);
            break;
        }
        case NBD_ST_REQ_DATA: {
            nbd_req_t *r = c->cur;
            n = r->io.length - r->got;
            if (n > avail)
                n = avail;
            if (n > 0) {
                memcpy(r->payload + r->got, p, n);
                r->got += (uint32_t)n;
                c->rpos += n;
            }
            if (r->got < r->io.length)
                goto need_more;
            c->cur = NULL;
            c->state = NBD_ST_REQ_HDR;
            nbd__req_submit(r);
            break;
        }
        case NBD_ST_DISCARD: {
            n = avail < c->discard_left ? avail : (size_t)c->discard_left;
            c->rpos += n;
            c->discard_left -= n;
            if (c->discard_left > 0)
                goto need_more;
            nbd_req_t *r = c->cur;
            c->cur = NULL;
            c->state = NBD_ST_REQ_HDR;
            nbd__req_reply(r);
            break;
        }
        }
    }
    return;

need_more:
    if (c->eof) {
        /* The client closed its side. Between messages that is a normal end
         * (what is in flight is still answered); inside one it is not. */
        bool between = c->rpos == c->rlen && (c->state == NBD_ST_OPT_HDR || c->state == NBD_ST_REQ_HDR);
        if (!between)
            tm_debug("nbd: %s: closed by the client in the middle of a message", c->peer);
        nbd__conn_close(c, between);
        return;
    }
    goto out;
yield:
    nbd__conn_kick(c);
out:
    nbd__conn_update_reading(c);
}

/* ---- closing ------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    nbd_conn_t *c = h->data;
    nbd_server_t *srv = c->srv;
    if (c->have_export)
        srv->ops->release(c->export);
    if (c->cur != NULL)
        nbd__req_free(c->cur);
    nbd__conn_ready_unlink(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->stats.conns_open--;
    tm_debug("nbd: %s: closed", c->peer);
    tm_free(c->opt_data);
    tm_free(c->rbuf);
    tm_free(c);
    nbd__server_maybe_done(srv);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    nbd_conn_t *c = req->data;
    (void)status;
    if (!c->closed) {
        c->closed = true;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    }
}

/* Close the handle once the backend has nothing of this connection left. */
void nbd__conn_finish(nbd_conn_t *c)
{
    if (!c->closing || c->backend_pending > 0 || c->closed)
        return;
    if (c->graceful) {
        if (c->shutting)
            return;
        /* Let the replies already queued reach the client first. */
        c->shutting = true;
        c->shut.data = c;
        if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
    }
    c->closed = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* Stop decoding and end the connection: gracefully (answer what is in
 * flight, flush, shut down) or not (drop every reply). A hard close may
 * follow a graceful one, never the other way round. */
void nbd__conn_close(nbd_conn_t *c, bool graceful)
{
    if (c->closing) {
        if (graceful || !c->graceful)
            return;
        c->graceful = false;
        if (c->shutting && !c->closed) {
            /* uv_close cancels the pending shutdown. */
            c->closed = true;
            uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
            return;
        }
        nbd__conn_finish(c);
        return;
    }
    c->closing = true;
    c->graceful = graceful;
    nbd__conn_ready_unlink(c);
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    nbd__conn_finish(c);
}
