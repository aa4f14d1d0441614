/*
 * The HTTP/1.1 server under the orchestrator API (docs/api.md): a listener
 * on a libuv loop, request parsing with nodejs http-parser, a router from
 * {method, pattern} to handlers, bearer-token checks, and JSON replies built
 * with jansson. The API's endpoints are written on top of it; this module
 * knows none of them. api/README.md has the request's life and the limits.
 *
 * What a client gets without any handler running:
 *   - 400 bad-request for bytes that are not HTTP (and the connection is
 *     closed), for a path or query with a bad %-escape, and for a JSON body
 *     that does not parse (the message says where);
 *   - 404 not-found for a path no route matches, 405 method-not-allowed with
 *     an Allow header when another method's route does;
 *   - 401 unauthorized on a route that is not public, without
 *     "Authorization: Bearer TOKEN" naming the configured token;
 *   - 413 too-large for a body over TM_HTTP_MAX_BODY (from Content-Length
 *     before any of it is read, or while a chunked body arrives), 415
 *     unsupported-media-type for a body that is not application/json, 431
 *     headers-too-large for a request line and headers over
 *     TM_HTTP_MAX_HEADER_BYTES; the connection is closed after each of these
 *     when the client has a body still to send.
 * Keep-alive, HTTP/1.0, "Connection: close", "Expect: 100-continue" and
 * pipelining (responses in request order) work as RFC 9112 says.
 *
 * Threads: everything runs on the loop's thread, handlers included. A
 * handler may reply before it returns or later (after uv_queue_work, a
 * timer, ...), but always on the loop thread.
 *
 * The process must ignore SIGPIPE, as with any libuv program that writes to
 * sockets.
 */
#ifndef TM_API_HTTP_H
#define TM_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <uv.h>

/* Named limits (docs/api.md "Limits"). */
#define TM_HTTP_MAX_HEADER_BYTES (16u << 10)  /* request line and headers together */
#define TM_HTTP_MAX_BODY (1u << 20)           /* request body */
#define TM_HTTP_MAX_CONNS 256u                /* default; more are accepted and closed at once */
#define TM_HTTP_REQUEST_TIMEOUT_MS 30000u     /* default; see tm_http_config_t */
#define TM_HTTP_MAX_PIPELINE 16u              /* requests parsed ahead of their responses, per connection */
#define TM_HTTP_MAX_ROUTES 256u

/* The Content-Type of Prometheus' text format, for tm_http_reply_text(). */
#define TM_HTTP_PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"

typedef struct tm_http_server tm_http_server_t;
typedef struct tm_http_req tm_http_req_t;

/* Called once per request that reached its route (auth, body and JSON
 * checked). It must reply exactly once with one of the tm_http_reply_*
 * functions, now or later; req is valid until then and invalid after. */
typedef void (*tm_http_handler_fn)(tm_http_req_t *req, void *ctx);

typedef struct tm_http_route {
    /* "GET", "POST", ... as http-parser names methods (upper case). */
    const char *method;
    /* "/v1/machines/{machine}/points/{selector}": literal segments, and
     * {name} for exactly one non-empty segment, handed to the handler
     * %-decoded by tm_http_param(req, "name"). */
    const char *pattern;
    tm_http_handler_fn handler;
    void *ctx;
    /* true: served without a token (GET /v1/health). */
    bool public;
} tm_http_route_t;

typedef struct tm_http_config {
    /* Added as "appliance" to every JSON response; copied. Required. */
    const char *appliance;
    /* The bearer token that non-public routes need; copied. Required when
     * any route is not public. */
    const char *token;
    /* The routing table; copied. The first route that matches the path and
     * method wins. */
    const tm_http_route_t *routes;
    size_t nroutes;
    /* 0 for the defaults above. */
    unsigned max_conns;
    /* How long a client has to send a whole request once the server waits
     * for one (a new or idle keep-alive connection, or a request begun);
     * then the connection is closed. Not counted while its handler works. */
    uint32_t request_timeout_ms;
} tm_http_config_t;

typedef struct tm_http_stats {
    uint64_t conns_accepted;
    uint64_t conns_open;     /* at this moment */
    uint64_t conns_refused;  /* over max_conns: accepted and closed */
    uint64_t conns_dropped;  /* closed by the server: malformed input, timeout */
    uint64_t requests;       /* requests answered (any status) */
    uint64_t status_2xx;
    uint64_t status_4xx;
    uint64_t status_5xx;
} tm_http_stats_t;

/* ---- the server --------------------------------------------------------- */

/*
 * Make a server on loop; it serves nothing until tm_http_server_listen().
 * Returns 0, -EINVAL (no appliance id, no token while a route needs one,
 * more than TM_HTTP_MAX_ROUTES routes, a route without a handler, or a
 * pattern that is not "/" followed by segments: literal or {name}, names
 * unique within it), -ENOMEM, or a libuv error.
 */
int tm_http_server_new(uv_loop_t *loop, const tm_http_config_t *cfg, tm_http_server_t **out);

/* Listen on addr ("HOST:PORT" or "[V6]:PORT", base/addr.h; port 0 picks a
 * free one). Once per server. 0, -EINVAL (malformed address), -EBUSY
 * (already listening), or the bind/listen error (logged). */
int tm_http_server_listen(tm_http_server_t *srv, const char *addr);

/* The bound address (port 0 resolved). 0, -ENOTCONN when not listening. */
int tm_http_server_addr(const tm_http_server_t *srv, struct sockaddr_storage *out);
/* The bound port, or a negative error when not listening. */
int tm_http_server_port(const tm_http_server_t *srv);

void tm_http_server_get_stats(const tm_http_server_t *srv, tm_http_stats_t *out);

typedef void (*tm_http_close_cb)(void *arg);

/*
 * Stop listening and close every connection at once (no further response is
 * sent). Requests that handlers still hold stay valid: their replies are
 * dropped and freed when they come. Socket-less connections must be freed
 * (tm_http_mem_free). Once the last request is replied and every handle is
 * closed, the server frees itself and calls cb(arg) (cb may be NULL): from
 * the loop, or before this returns when nothing was left. Call once; srv is
 * invalid from this call on.
 */
void tm_http_server_close(tm_http_server_t *srv, tm_http_close_cb cb, void *arg);

/* ---- a request, for its handler ----------------------------------------- */

const char *tm_http_method(const tm_http_req_t *req);
/* The path as sent, not decoded, without the query. */
const char *tm_http_path(const tm_http_req_t *req);
/* The {name} segment of the route's pattern, %-decoded; NULL for a name the
 * pattern lacks. */
const char *tm_http_param(const tm_http_req_t *req, const char *name);
/* A query parameter, %-decoded ('+' is a space); "" for "?name" without
 * '='; NULL when absent. The first one when repeated. */
const char *tm_http_query(const tm_http_req_t *req, const char *name);
/* Every query parameter in order: their count, and the i-th. */
size_t tm_http_query_count(const tm_http_req_t *req);
void tm_http_query_at(const tm_http_req_t *req, size_t i, const char **name, const char **value);
/* A request header by name, any case; the first one when repeated. */
const char *tm_http_header(const tm_http_req_t *req, const char *name);
/* The body (NUL-terminated after len bytes; NULL and 0 without one). */
const uint8_t *tm_http_body(const tm_http_req_t *req, size_t *len);
/* The body parsed: an application/json body always is by the time the
 * handler runs. Borrowed (freed with the request); NULL without a body. */
json_t *tm_http_json(const tm_http_req_t *req);
/* "127.0.0.1:54321", for log lines. */
const char *tm_http_peer(const tm_http_req_t *req);
/* True once the client went away: a reply will be dropped. Handlers with
 * long work may check it to stop early; they must still reply. */
bool tm_http_client_gone(const tm_http_req_t *req);

/* ---- replies (each ends the request; exactly one per request) ----------- */

/* Add a header to the coming response (Location, Retry-After, ...). name and
 * value are copied. 0, -EINVAL (empty name, or CR, LF or NUL in either),
 * -ENOMEM. */
int tm_http_add_header(tm_http_req_t *req, const char *name, const char *value);

/* Reply with status and body, a JSON object, taking the caller's reference;
 * "appliance" is set in it. Anything but an object (NULL included) becomes a
 * 500 internal error. */
void tm_http_reply_json(tm_http_req_t *req, int status, json_t *body);

/* Reply with len bytes of text (copied) and the given Content-Type, e.g.
 * TM_HTTP_PROMETHEUS_TEXT for /metrics. */
void tm_http_reply_text(tm_http_req_t *req, int status, const char *content_type, const char *text, size_t len);

/* Reply with docs/api.md's error object:
 *   {"appliance": ID, "error": {"code": code, "message": formatted}}
 * code is one of the stable codes of docs/api.md's table. */
void tm_http_reply_error(tm_http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- without a socket (fuzzing) ------------------------------------------ */

/*
 * One connection of srv whose input is given by the caller and whose output
 * is collected in memory; everything else (parsing, routing, replies, order,
 * closing) is the code path of a TCP connection. srv need not listen. The
 * request timeout does not apply.
 */
typedef struct tm_http_conn tm_http_mem_t;

/* 0, -ENOMEM, or -ESHUTDOWN when the server is closing. */
int tm_http_mem_open(tm_http_server_t *srv, tm_http_mem_t **out);
/* Bytes from the client, parsed and dispatched before the call returns.
 * Returns how many were taken: fewer than len when the connection waits for
 * handlers to reply (TM_HTTP_MAX_PIPELINE requests queued and its staging
 * buffer full; a socket would stop reading); feed the rest after replying.
 * Input after the connection ended is taken and ignored. */
size_t tm_http_mem_feed(tm_http_mem_t *m, const void *data, size_t len);
/* The client closed its side. */
void tm_http_mem_eof(tm_http_mem_t *m);
/* Everything written to the client so far. */
const uint8_t *tm_http_mem_output(const tm_http_mem_t *m, size_t *len);
/* True when the server ended the connection (it reads nothing more). */
bool tm_http_mem_closed(const tm_http_mem_t *m);
/* Drop the connection as a reset would: requests with handlers stay valid
 * until replied, as for a TCP client that went away. */
void tm_http_mem_free(tm_http_mem_t *m);

#endif
