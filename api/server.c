/*
 * The HTTP server: its configuration, the listener and the connection
 * limit, the socket-less connection for fuzzing, and the server's life from
 * tm_http_server_new() to the close callback.
 */
#include "api/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/addr.h"
#include "base/log.h"
#include "base/mem.h"

/* ---- connections ------------------------------------------------------------------ */

static void conn_link(tm_http_server_t *srv, tm_http_conn_t *c)
{
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.conns_open++;
}

void tm_http__server_conn_gone(tm_http_conn_t *c)
{
    tm_http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->stats.conns_open--;
    if (!c->mem)
        srv->nconns--;
    tm_free(c->out);
    tm_free(c);
    tm_http__server_maybe_done(srv);
}

static void conn_name_peer(tm_http_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "unknown peer");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        tm_addr_format((const struct sockaddr *)&ss, c->peer, sizeof c->peer);
}

static void on_refused_closed(uv_handle_t *h)
{
    tm_http_server_t *srv = h->data;
    tm_free(h);
    srv->refusing--;
    tm_http__server_maybe_done(srv);
}

/* Over the limit: take the connection off the backlog and close it, so the
 * client learns at once instead of waiting in the kernel's queue. */
static void refuse(tm_http_server_t *srv, uv_stream_t *server)
{
    uv_tcp_t *t = tm_malloc(sizeof *t);
    if (t == NULL || uv_tcp_init(srv->loop, t) < 0) {
        tm_free(t);
        tm_error("api: out of memory refusing a connection");
        return;
    }
    t->data = srv;
    srv->refusing++;
    srv->stats.conns_refused++;
    char peer[64] = "unknown peer";
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0)
            tm_addr_format((const struct sockaddr *)&ss, peer, sizeof peer);
    }
    tm_warn("api: %s: refused: %u connections are open (the limit)", peer, srv->max_conns);
    uv_close((uv_handle_t *)t, on_refused_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    tm_http_server_t *srv = server->data;
    if (status < 0) {
        tm_warn("api: accept failed: %s", uv_strerror(status));
        return;
    }
    if (srv->nconns >= srv->max_conns) {
        refuse(srv, server);
        return;
    }
    tm_http_conn_t *c = tm_calloc(1, sizeof *c);
    if (c == NULL) {
        /* Without memory for the handle the connection cannot even be
         * accepted to be closed; libuv stops accepting until it is. */
        tm_error("api: out of memory for a new connection");
        return;
    }
    c->srv = srv;
    snprintf(c->peer, sizeof c->peer, "unknown peer");
    int rc = uv_tcp_init(srv->loop, &c->tcp);
    if (rc < 0) {
        tm_error("api: cannot make a connection handle: %s", uv_strerror(rc));
        tm_free(c);
        return;
    }
    /* Cannot fail (libuv only links the handle in). */
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    tm_http__conn_init(c);
    conn_link(srv, c);
    srv->nconns++;
    srv->stats.conns_accepted++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        tm_warn("api: accept failed: %s", uv_strerror(rc));
        tm_http__conn_close_hard(c, NULL);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_name_peer(c);
    tm_debug("api: %s: connected", c->peer);
    tm_http__conn_update(c);
}

/* ---- the server ---------------------------------------------------------------------- */

static void server_free(tm_http_server_t *srv)
{
    tm_http__router_free(&srv->router);
    tm_free(srv->appliance);
    tm_free(srv->token);
    tm_free(srv->internal_body);
    tm_free(srv);
}

/* The 500 body for when building a response fails (no memory, or a
 * handler's reply that is not an object): made once, here. */
static char *make_internal_body(const char *appliance)
{
    json_t *o = json_pack("{s:s, s:{s:s, s:s}}", "appliance", appliance, "error", "code", "internal", "message",
                          "the appliance could not build its response (the log has the detail)");
    if (o == NULL)
        return NULL;
    size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
    char *s = n ? tm_malloc(n + 2) : NULL;
    if (s != NULL) {
        json_dumpb(o, s, n, JSON_COMPACT);
        s[n] = '\n';
        s[n + 1] = '\0';
    }
    json_decref(o);
    return s;
}

int tm_http_server_new(uv_loop_t *loop, const tm_http_config_t *cfg, tm_http_server_t **out)
{
    *out = NULL;
    if (cfg == NULL || cfg->appliance == NULL || cfg->appliance[0] == '\0')
        return -EINVAL;
    tm_http_server_t *srv = tm_calloc(1, sizeof *srv);
    if (srv == NULL)
        return -ENOMEM;
    srv->loop = loop;
    srv->max_conns = cfg->max_conns ? cfg->max_conns : TM_HTTP_MAX_CONNS;
    srv->timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : TM_HTTP_REQUEST_TIMEOUT_MS;
    bool needs_token = false;
    int rc = tm_http__router_init(&srv->router, cfg->routes, cfg->nroutes, &needs_token);
    if (rc)
        goto out_free;
    rc = -EINVAL;
    if (needs_token && (cfg->token == NULL || cfg->token[0] == '\0'))
        goto out_free;
    /* The id goes into every response: JSON makes any text safe there. */
    json_t *id = json_string(cfg->appliance);
    if (id == NULL)
        goto out_free;
    json_decref(id);
    rc = -ENOMEM;
    srv->appliance = tm_strdup(cfg->appliance);
    srv->token = tm_strdup(cfg->token ? cfg->token : "");
    srv->internal_body = make_internal_body(cfg->appliance);
    if (srv->appliance == NULL || srv->token == NULL || srv->internal_body == NULL)
        goto out_free;
    srv->token_len = strlen(srv->token);
    *out = srv;
    return 0;

out_free:
    server_free(srv);
    return rc;
}

static void on_listener_closed(uv_handle_t *h)
{
    tm_http_server_t *srv = h->data;
    srv->handles--;
    tm_http__server_maybe_done(srv);
}

int tm_http_server_listen(tm_http_server_t *srv, const char *addr)
{
    if (srv->listener_init)
        return -EBUSY;
    struct sockaddr_storage ss;
    if (tm_addr_parse(addr, &ss) != 0)
        return -EINVAL;
    int rc = uv_tcp_init(srv->loop, &srv->listener);
    if (rc < 0)
        return rc;
    srv->listener_init = true;
    srv->handles++;
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, TM_HTTP_LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        /* The handle stays initialised and closes with the server. */
        tm_error("api: cannot listen on %s: %s", addr, uv_strerror(rc));
        return rc;
    }
    srv->listening = true;
    char bound[64] = "?";
    struct sockaddr_storage b;
    if (tm_http_server_addr(srv, &b) == 0)
        tm_addr_format((const struct sockaddr *)&b, bound, sizeof bound);
    tm_info("api: listening on %s", bound);
    return 0;
}

int tm_http_server_addr(const tm_http_server_t *srv, struct sockaddr_storage *out)
{
    if (!srv->listening)
        return -ENOTCONN;
    int len = sizeof *out;
    return uv_tcp_getsockname(&srv->listener, (struct sockaddr *)out, &len);
}

int tm_http_server_port(const tm_http_server_t *srv)
{
    struct sockaddr_storage ss;
    int rc = tm_http_server_addr(srv, &ss);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
}

void tm_http_server_get_stats(const tm_http_server_t *srv, tm_http_stats_t *out)
{
    *out = srv->stats;
}

void tm_http__server_maybe_done(tm_http_server_t *srv)
{
    if (!srv->closing || srv->handles > 0 || srv->conns != NULL || srv->held > 0 || srv->refusing > 0)
        return;
    tm_http_close_cb cb = srv->close_cb;
    void *arg = srv->close_arg;
    server_free(srv);
    if (cb)
        cb(arg);
}

void tm_http_server_close(tm_http_server_t *srv, tm_http_close_cb cb, void *arg)
{
    srv->closing = true;
    srv->close_cb = cb;
    srv->close_arg = arg;
    if (srv->listener_init)
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    srv->listening = false;
    for (tm_http_conn_t *c = srv->conns; c != NULL; c = c->next)
        tm_http__conn_close_hard(c, NULL);
    /* Everything may already be gone (no listener, no connection, no
     * request held): finish from the loop all the same. */
    tm_http__server_maybe_done(srv);
}

/* ---- without a socket ------------------------------------------------------------------- */

int tm_http_mem_open(tm_http_server_t *srv, tm_http_mem_t **out)
{
    *out = NULL;
    if (srv->closing)
        return -ESHUTDOWN;
    tm_http_conn_t *c = tm_calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->srv = srv;
    c->mem = true;
    snprintf(c->peer, sizeof c->peer, "memory");
    tm_http__conn_init(c);
    conn_link(srv, c);
    *out = c;
    return 0;
}

size_t tm_http_mem_feed(tm_http_mem_t *m, const void *data, size_t len)
{
    return tm_http__conn_input(m, data, len);
}

void tm_http_mem_eof(tm_http_mem_t *m)
{
    if (!m->closed && !m->eof)
        tm_http__conn_eof(m);
}

const uint8_t *tm_http_mem_output(const tm_http_mem_t *m, size_t *len)
{
    *len = m->out_len;
    return m->out;
}

bool tm_http_mem_closed(const tm_http_mem_t *m)
{
    return m->closed;
}

void tm_http_mem_free(tm_http_mem_t *m)
{
    tm_http__conn_close_hard(m, NULL);
    tm_http__server_conn_gone(m);
}
