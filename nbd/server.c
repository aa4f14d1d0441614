/*
 * The NBD server: the listener, the queue of connections with input left to
 * decode, and the server's life from nbd_server_new() to the close callback.
 */
#include "nbd/server_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/addr.h"
#include "base/log.h"
#include "base/mem.h"

/* ---- connections to decode again ------------------------------------------ */

void nbd__conn_ready_unlink(nbd_conn_t *c)
{
    nbd_server_t *srv = c->srv;
    if (!c->ready)
        return;
    if (c->ready_prev)
        c->ready_prev->ready_next = c->ready_next;
    else
        srv->ready_head = c->ready_next;
    if (c->ready_next)
        c->ready_next->ready_prev = c->ready_prev;
    else
        srv->ready_tail = c->ready_prev;
    c->ready_prev = c->ready_next = NULL;
    c->ready = false;
    srv->nready--;
}

static void on_idle(uv_idle_t *h);

/* Decode c again from the loop soon, not from inside the current callback:
 * keeps completions that arrive synchronously from recursing into the
 * decoder, and lets a busy connection yield to the others. */
void nbd__conn_kick(nbd_conn_t *c)
{
    nbd_server_t *srv = c->srv;
    if (c->closing || c->ready)
        return;
    c->ready = true;
    c->ready_next = NULL;
    c->ready_prev = srv->ready_tail;
    if (srv->ready_tail)
        srv->ready_tail->ready_next = c;
    else
        srv->ready_head = c;
    srv->ready_tail = c;
    srv->nready++;
    if (!srv->idle_active && !srv->closing) {
        uv_idle_start(&srv->idle, on_idle);
        srv->idle_active = true;
    }
}

static void on_idle(uv_idle_t *h)
{
    nbd_server_t *srv = h->data;
    /* One turn for each connection queued now, oldest first. One that runs
     * out of budget again, or is kicked meanwhile, goes to the back and
     * waits for the next turn. The queue stays consistent throughout: a
     * backend completing synchronously may kick or close any connection. */
    for (unsigned n = srv->nready; n > 0 && srv->ready_head != NULL; n--) {
        nbd_conn_t *c = srv->ready_head;
        nbd__conn_ready_unlink(c);
        nbd__conn_process(c);
    }
    if (srv->ready_head == NULL && srv->idle_active) {
        uv_idle_stop(&srv->idle);
        srv->idle_active = false;
    }
}


/* ---- accepting ----------------------------------------------------------- */

static void conn_name_peer(nbd_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    snprintf(c->peer, sizeof c->peer, "unknown peer");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(c->peer, sizeof c->peer, "[%s]:%d", host, port);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    nbd_server_t *srv = server->data;
    if (status < 0) {
        tm_warn("nbd: accept failed: %s", uv_strerror(status));
        return;
    }
    nbd_conn_t *c = tm_calloc(1, sizeof *c);
    uint8_t *rbuf = c ? tm_malloc(NBD_RBUF_SIZE) : NULL;
    if (rbuf == NULL) {
        /* Without memory for the handle the connection cannot even be
         * accepted to be closed; libuv stops accepting until it is. */
        tm_error("nbd: out of memory for a new connection");
        tm_free(c);
        return;
    }
    c->srv = srv;
    c->rbuf = rbuf;
    c->state = NBD_ST_FLAGS;
    snprintf(c->peer, sizeof c->peer, "unknown peer");
    int rc = uv_tcp_init(srv->loop, &c->tcp);
    if (rc < 0) {
        tm_error("nbd: cannot make a connection handle: %s", uv_strerror(rc));
        tm_free(rbuf);
        tm_free(c);
        return;
    }
    c->tcp.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.conns_accepted++;
    srv->stats.conns_open++;

    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        tm_warn("nbd: accept failed: %s", uv_strerror(rc));
        nbd__conn_close(c, false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_name_peer(c);
    tm_debug("nbd: %s: connected", c->peer);

    uint8_t greeting[NBD_GREETING_LEN];
    nbd_proto_put_greeting(greeting);
    nbd__conn_send(c, greeting, sizeof greeting, NULL, 0, NULL, 0);
    if (!c->closing)
        nbd__conn_update_reading(c);
}

/* ---- the server ------------------------------------------------------------ */

int nbd_server_new(uv_loop_t *loop, const nbd_backend_ops_t *ops, void *backend, nbd_server_t **out)
{
    *out = NULL;
    if (ops == NULL || ops->open == NULL || ops->read == NULL || ops->release == NULL)
        return -EINVAL;
    nbd_server_t *srv = tm_calloc(1, sizeof *srv);
    if (srv == NULL)
        return -ENOMEM;
    srv->loop = loop;
    srv->ops = ops;
    srv->backend = backend;
    int rc = uv_idle_init(loop, &srv->idle);
    if (rc < 0) {
        tm_free(srv);
        return rc;
    }
    srv->idle.data = srv;
    srv->handles = 1;
    *out = srv;
    return 0;
}

static void on_server_handle_closed(uv_handle_t *h);

int nbd_server_listen(nbd_server_t *srv, const char *addr)
{
    if (srv->listener_init)
        return -EBUSY;
    struct sockaddr_storage ss;
    int rc = tm_addr_parse(addr, &ss) == 0 ? 0 : -EINVAL;
    if (rc < 0)
        return rc;
    rc = uv_tcp_init(srv->loop, &srv->listener);
    if (rc < 0)
        return rc;
    srv->listener_init = true;
    srv->handles++;
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, NBD_LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        /* The handle stays initialised and closes with the server; a second
         * attempt needs a new server. */
        tm_error("nbd: cannot listen on %s: %s", addr, uv_strerror(rc));
        return rc;
    }
    srv->listening = true;
    tm_info("nbd: listening on %s (port %d)", addr, nbd_server_port(srv));
    return 0;
}

int nbd_server_port(const nbd_server_t *srv)
{
    if (!srv->listening)
        return -ENOTCONN;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
}

void nbd_server_get_stats(const nbd_server_t *srv, nbd_server_stats_t *out)
{
    *out = srv->stats;
}

void nbd__server_maybe_done(nbd_server_t *srv)
{
    if (!srv->closing || srv->handles > 0 || srv->conns != NULL)
        return;
    nbd_close_cb cb = srv->close_cb;
    void *arg = srv->close_arg;
    tm_free(srv);
    if (cb)
        cb(arg);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    nbd_server_t *srv = h->data;
    srv->handles--;
    nbd__server_maybe_done(srv);
}

unsigned nbd_server_drop_export(nbd_server_t *srv, void *export)
{
    unsigned n = 0;
    for (nbd_conn_t *c = srv->conns; c != NULL; c = c->next) {
        if (c->have_export && c->export == export && !c->closing) {
            tm_info("nbd: %s: export taken away by the server; closing", c->peer);
            nbd__conn_close(c, false);
            n++;
        }
    }
    return n;
}

void nbd_server_close(nbd_server_t *srv, nbd_close_cb cb, void *arg)
{
    srv->closing = true;
    srv->close_cb = cb;
    srv->close_arg = arg;
    if (srv->listener_init)
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->idle, on_server_handle_closed);
    srv->idle_active = false;
    for (nbd_conn_t *c = srv->conns; c != NULL; c = c->next) {
        nbd__conn_close(c, false);
        if (srv->ops->cancel == NULL)
            continue;
        for (nbd_req_t *r = c->pending, *next; r != NULL; r = next) {
            next = r->next;
            srv->ops->cancel(&r->io);
        }
    }
}
