/* Transmission requests: judged, handed to the backend, replied to. */
#include "nbd/server_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

/* ---- transmission ---------------------------------------------------------- */

void nbd__req_free(nbd_req_t *r)
{
    nbd_conn_t *c = r->conn;
    c->inflight--;
    c->inflight_bytes -= r->charge;
    tm_free(r);
    if (c->paused) {
        c->paused = false;
        nbd__conn_kick(c);
    }
}

/* A request with room for payload bytes of data; NULL when out of memory. */
static nbd_req_t *req_new(nbd_conn_t *c, const nbd_req_hdr_t *h, uint32_t payload)
{
    nbd_req_t *r = tm_malloc(sizeof *r + payload);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->conn = c;
    r->type = h->type;
    r->handle = h->handle;
    r->charge = payload;
    r->io.offset = h->offset;
    r->io.length = h->length;
    r->io.export = c->export;
    r->io.buf = payload ? r->payload : NULL;
    c->inflight++;
    c->inflight_bytes += payload;
    return r;
}

static void on_reply_written(uv_write_t *w, int status)
{
    nbd_req_t *r = nbd__container_of(w, nbd_req_t, wreq);
    nbd_conn_t *c = r->conn;
    nbd__req_free(r);
    if (status < 0 && status != UV_ECANCELED) {
        tm_debug("nbd: %s: reply not sent: %s", c->peer, uv_strerror(status));
        nbd__conn_close(c, false);
    }
}

void nbd__req_reply(nbd_req_t *r)
{
    nbd_conn_t *c = r->conn;
    if (c->closing && !c->graceful) {
        nbd__req_free(r);
        return;
    }
    if (r->error != 0)
        c->srv->stats.request_errors++;
    nbd_proto_put_simple_reply(r->hdr, r->error, r->handle);
    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init((char *)r->hdr, sizeof r->hdr);
    if (r->type == NBD_CMD_READ && r->error == 0 && r->io.length > 0)
        bufs[n++] = uv_buf_init((char *)r->payload, r->io.length);
    int rc = uv_write(&r->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_reply_written);
    if (rc < 0) {
        tm_debug("nbd: %s: reply not sent: %s", c->peer, uv_strerror(rc));
        nbd__req_free(r);
        nbd__conn_close(c, false);
    }
}

void nbd_io_done(nbd_io_t *io, int status)
{
    nbd_req_t *r = nbd__container_of(io, nbd_req_t, io);
    nbd_conn_t *c = r->conn;
    if (!r->with_backend)
        abort(); /* completed twice: the request may already be freed or reused */
    r->with_backend = false;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->backend_pending--;

    r->error = nbd_proto_error(status);
    if (status == 0 && r->type == NBD_CMD_READ)
        c->srv->stats.bytes_read += io->length;
    else if (status == 0 && r->type == NBD_CMD_WRITE)
        c->srv->stats.bytes_written += io->length;
    nbd__req_reply(r);
    if (c->closing)
        nbd__conn_finish(c);
}

void nbd__req_submit(nbd_req_t *r)
{
    nbd_conn_t *c = r->conn;
    const nbd_backend_ops_t *ops = c->srv->ops;
    r->next = c->pending;
    r->prev = NULL;
    if (c->pending)
        c->pending->prev = r;
    c->pending = r;
    c->backend_pending++;
    r->with_backend = true;
    switch (r->io.kind) {
    case NBD_IO_READ:
        ops->read(&r->io);
        break;
    case NBD_IO_WRITE:
        ops->write(&r->io);
        break;
    case NBD_IO_FLUSH:
        ops->flush(&r->io);
        break;
    case NBD_IO_TRIM:
        ops->trim(&r->io);
        break;
    case NBD_IO_ZERO:
        ops->zero(&r->io);
        break;
    }
}

/* A refused request: reply at once, or after skipping a WRITE's payload. */
static void conn_refuse(nbd_conn_t *c, const nbd_req_hdr_t *h, uint32_t error)
{
    nbd_req_t *r = req_new(c, h, 0);
    if (r == NULL) {
        tm_error("nbd: %s: out of memory for a reply; closing the connection", c->peer);
        nbd__conn_close(c, false);
        return;
    }
    r->error = error;
    uint32_t payload = nbd_proto_payload_len(h);
    if (payload > 0) {
        c->cur = r;
        c->discard_left = payload;
        c->state = NBD_ST_DISCARD;
    } else {
        nbd__req_reply(r);
    }
}

void nbd__conn_request(nbd_conn_t *c, const nbd_req_hdr_t *h)
{
    if (h->magic != NBD_REQUEST_MAGIC) {
        nbd__conn_log_drop(c, "bad request magic 0x%08x", h->magic);
        return;
    }
    c->srv->stats.requests++;
    if (h->type == NBD_CMD_DISC) {
        /* No reply; what is in flight is answered, then the connection ends. */
        c->state = NBD_ST_END;
        nbd__conn_close(c, true);
        return;
    }
    uint32_t error = nbd_proto_check_req(h, c->size, c->tflags);
    if (error != 0) {
        conn_refuse(c, h, error);
        return;
    }

    nbd_io_kind_t kind;
    uint32_t flags = (h->flags & NBD_CMD_FLAG_FUA) ? NBD_IO_FUA : 0;
    switch (h->type) {
    case NBD_CMD_READ:
        kind = NBD_IO_READ;
        flags = 0;
        break;
    case NBD_CMD_WRITE:
        kind = NBD_IO_WRITE;
        break;
    case NBD_CMD_FLUSH:
        kind = NBD_IO_FLUSH;
        flags = 0;
        break;
    case NBD_CMD_TRIM:
        kind = NBD_IO_TRIM;
        break;
    default:
        kind = NBD_IO_ZERO;
        if (h->flags & NBD_CMD_FLAG_NO_HOLE)
            flags |= NBD_IO_NO_HOLE;
        break;
    }
    /* Nothing to do: zero-length transfers, and a flush where nothing can
     * have been written. */
    bool noop = (kind == NBD_IO_FLUSH) ? !(c->tflags & NBD_FLAG_SEND_FLUSH) : h->length == 0;
    if (noop) {
        conn_refuse(c, h, 0);
        return;
    }

    uint32_t payload = (kind == NBD_IO_READ || kind == NBD_IO_WRITE) ? h->length : 0;
    nbd_req_t *r = req_new(c, h, payload);
    if (r == NULL) {
        tm_warn("nbd: %s: out of memory for a %u-byte %s", c->peer, h->length, nbd_proto_cmd_name(h->type));
        conn_refuse(c, h, NBD_ENOMEM);
        return;
    }
    r->io.kind = kind;
    r->io.flags = flags;
    if (kind == NBD_IO_WRITE) {
        c->cur = r;
        c->state = NBD_ST_REQ_DATA;
    } else {
        nbd__req_submit(r);
    }
}
