/*
 * Inside the HTTP server: the structures and the functions its files share.
 * server.c has the listener, the server's life and the socket-less
 * connection; http_conn.c a connection's input, parsing, output, timer and
 * closing; request.c the request object and its checks before dispatch;
 * router.c the route table; reply.c building responses. The rules across
 * them are in api/README.md. Not for other modules.
 */
#ifndef TM_API_HTTP_INT_H
#define TM_API_HTTP_INT_H

#include <http_parser.h>

#include "api/http.h"

#define TM_HTTP_RBUF_SIZE (16u << 10) /* input staging per connection */
#define TM_HTTP_LINGER_MS 2000u       /* reading and dropping input after the last response */
#define TM_HTTP_LISTEN_BACKLOG 128
#define TM_HTTP_MAX_SEGMENTS 32u      /* in a pattern; a longer path matches no route */
#define TM_HTTP_MAX_PARAMS 8u         /* {name}s in a pattern */

#define tm_http__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef struct tm_http_conn tm_http_conn_t;

/* ---- router.c --------------------------------------------------------------- */

/* One pattern, split into segments; a param segment keeps its name. */
typedef struct tm_http_seg {
    char *text; /* literal text, or the param's name */
    bool param;
} tm_http_seg_t;

typedef struct tm_http_rt {
    char *method;
    tm_http_seg_t *segs;
    unsigned nsegs;
    tm_http_handler_fn handler;
    void *ctx;
    bool public;
} tm_http_rt_t;

typedef struct tm_http_router {
    tm_http_rt_t *v;
    size_t n;
} tm_http_router_t;

/* Copy and check the table; 0, -EINVAL, -ENOMEM. needs_token: some route is
 * not public. */
int tm_http__router_init(tm_http_router_t *rt, const tm_http_route_t *routes, size_t n, bool *needs_token);
void tm_http__router_free(tm_http_router_t *rt);

typedef enum tm_http_match {
    TM_HTTP_MATCH_OK,
    TM_HTTP_MATCH_NONE,   /* 404 */
    TM_HTTP_MATCH_METHOD, /* 405: allow has the methods, "GET, POST" */
} tm_http_match_t;

/* Match decoded segments; *route and the params (pointing into segs, in the
 * order of the pattern) on MATCH_OK. allow gets the methods on
 * MATCH_METHOD (cut to its size). */
tm_http_match_t tm_http__router_match(const tm_http_router_t *rt, const char *method, char *const *segs,
                                      unsigned nsegs, const tm_http_rt_t **route, char *allow, size_t allowlen);

/* ---- a request ------------------------------------------------------------- */

typedef struct tm_http_kv {
    const char *name;
    const char *value;
} tm_http_kv_t;

typedef enum tm_http_rstate {
    TM_HTTP_RS_PARSING,  /* being received */
    TM_HTTP_RS_HANDLER,  /* with its handler */
    TM_HTTP_RS_REPLIED,  /* response bytes ready, waiting for its turn */
} tm_http_rstate_t;

struct tm_http_req {
    tm_http_server_t *srv;
    tm_http_conn_t *conn;     /* NULL once the connection is gone */
    tm_http_req_t *next;      /* conn's queue, oldest first */
    tm_http_rstate_t state;
    bool held;                /* counted in srv->held: a handler has it */

    /* Received: the URL and the headers' names and values, each
     * NUL-terminated in hbuf ([off] indexes, as hbuf moves when it grows). */
    char *hbuf;
    size_t hlen, hcap;
    size_t url_off;
    size_t (*hoff)[2]; /* name, value offsets */
    size_t nhdr, hdrcap;
    bool in_value;     /* the last header piece was a value */
    bool headers_done;

    const char *method;
    bool head;         /* HEAD: the response carries no body */
    bool keep_alive;   /* what the client asked for */

    /* Routing and decoding (request.c), into one buffer of decoded text. */
    char *dbuf;
    char *path;        /* as sent, up to '?' */
    const tm_http_rt_t *route;
    tm_http_kv_t params[TM_HTTP_MAX_PARAMS];
    unsigned nparams;
    tm_http_kv_t *query;
    size_t nquery;

    uint8_t *body;
    size_t body_len, body_cap;
    json_t *json;

    /* The response. */
    char *extra;       /* headers from tm_http_add_header, "Name: value\r\n"... */
    size_t extra_len;
    char *out;
    size_t out_len;
    int status;
    bool close_after;  /* the connection ends after this response */
    uv_write_t wreq;
};

/* ---- request.c ---------------------------------------------------------------- */

tm_http_req_t *tm_http__req_new(tm_http_server_t *srv, tm_http_conn_t *c);
void tm_http__req_free(tm_http_req_t *r);
/* Append a URL or header piece (http-parser may split any of them).
 * 0, or -ENOMEM. */
int tm_http__req_add_url(tm_http_req_t *r, const char *at, size_t len);
int tm_http__req_add_field(tm_http_req_t *r, const char *at, size_t len);
int tm_http__req_add_value(tm_http_req_t *r, const char *at, size_t len);
/* The headers are complete: decode the path and query, route, check the
 * token, the Content-Length and the Content-Type. Replies with the error
 * when one fails (and returns false). */
bool tm_http__req_check_headers(tm_http_req_t *r, const http_parser *p);
/* The body arrived: parse JSON. Replies 400 on a parse error (false). */
bool tm_http__req_check_body(tm_http_req_t *r);

/* ---- reply.c ------------------------------------------------------------------ */

/* Build the response bytes and hand them to the connection (or drop them
 * when it is gone). Ends the request for its handler. */
void tm_http__reply_raw(tm_http_req_t *r, int status, const char *content_type, const char *body, size_t len);

/* ---- http_conn.c ---------------------------------------------------------------- */

struct tm_http_conn {
    tm_http_server_t *srv;
    tm_http_conn_t *prev, *next; /* srv->conns */
    bool mem;                    /* socket-less: tm_http_mem_* */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    unsigned handles;            /* tcp and timer, until their close callbacks */
    char peer[64];

    http_parser parser;
    int event;                   /* set by a parser callback before it pauses */
    int cb_status;               /* a callback refused: answer this status */
    uint8_t rbuf[TM_HTTP_RBUF_SIZE]; /* [rpos, rlen) not parsed yet */
    size_t rpos, rlen;
    size_t hdr_bytes;            /* of the message being received, while in its headers */
    bool in_headers;             /* between two messages, or inside a request line/headers */
    bool in_message;             /* a request begun, not complete */

    tm_http_req_t *cur;          /* the request being received (also the queue's tail) */
    tm_http_req_t *head, *tail;  /* requests not yet written, oldest first */
    unsigned nqueue;
    unsigned writing;            /* responses handed to uv_write */

    bool reading;
    bool timer_on;
    bool processing;             /* inside tm_http__conn_process */
    bool eof;                    /* the client closed its side */
    bool ending;                 /* parse nothing more; end once the queue is written */
    bool lingering;              /* shut down; dropping input until EOF or the linger timer */
    bool closed;                 /* handles closing (or, socket-less, done) */

    /* Socket-less output. */
    uint8_t *out;
    size_t out_len, out_cap;
};

/* Set up a new connection's parser; c->srv and c->mem are set. */
void tm_http__conn_init(tm_http_conn_t *c);
/* Parse what is buffered and dispatch, as far as the queue allows. */
void tm_http__conn_process(tm_http_conn_t *c);
/* Socket-less: bytes from the client into the staging buffer, processed.
 * Returns how many were taken (fewer when the buffer is full and the queue
 * waits for replies; all when the connection reads nothing more). */
size_t tm_http__conn_input(tm_http_conn_t *c, const uint8_t *data, size_t len);
/* The client closed its side. */
void tm_http__conn_eof(tm_http_conn_t *c);
/* A response is ready (r->out): write the queue's ready head(s). */
void tm_http__conn_flush(tm_http_conn_t *c);
/* End now: nothing more is written; requests with handlers are orphaned. */
void tm_http__conn_close_hard(tm_http_conn_t *c, const char *why);
/* Start or stop reading and the request timer to match the state. */
void tm_http__conn_update(tm_http_conn_t *c);

/* ---- server.c ------------------------------------------------------------------- */

struct tm_http_server {
    uv_loop_t *loop;
    char *appliance;
    char *token;
    size_t token_len;
    char *internal_body;         /* a 500 error body, for when building one fails */
    tm_http_router_t router;
    unsigned max_conns;
    uint32_t timeout_ms;

    uv_tcp_t listener;
    bool listener_init;
    bool listening;
    unsigned handles;            /* the listener, until its close callback */
    tm_http_conn_t *conns;
    unsigned nconns;             /* TCP connections (socket-less ones are not counted) */
    unsigned held;               /* requests a handler has not replied to */
    unsigned refusing;           /* over-limit handles being closed */
    bool closing;
    tm_http_close_cb close_cb;
    void *close_arg;
    tm_http_stats_t stats;
};

/* A connection's handles are closed (or a socket-less one is freed): unlink
 * and free it. */
void tm_http__server_conn_gone(tm_http_conn_t *c);
/* Free the server and call its close callback once nothing of it is left. */
void tm_http__server_maybe_done(tm_http_server_t *srv);

#endif
