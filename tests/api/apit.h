/*
 * Helpers for the HTTP server tests: a server with a few toy routes on its
 * own thread and loop, libcurl as the real client, and a raw blocking TCP
 * client for the bytes curl never sends (malformed input, pipelining,
 * resets).
 *
 * The toy routes (public only where said):
 *   GET  /v1/health                              public, {"status": "ok"}
 *   GET  /v1/machines/{machine}/points/{selector} {"machine", "selector", "query": {name: value...}}
 *   PUT  and DELETE on the same path             {"method"}
 *   POST /v1/machines/{machine}/tags             {"machine", "got": the JSON body}
 *   GET  /fast?id=N                              public, {"id": N}
 *   GET  /slow?id=N&ms=M                         public, {"id": N} after M ms (a timer)
 *   GET  /pending                                public, {"pending": /slow requests not yet replied}
 *   GET  /metrics                                public, Prometheus text
 *
 * Threads: the server's loop runs on a thread of its own and everything of
 * the server happens there; the test thread talks to it over sockets only,
 * and reads apit_server_t's counters after apit_stop() joined the thread.
 * Criterion runs each test in its own process, so all state is per test.
 */
#ifndef APIT_H
#define APIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "api/http.h"
#include "support/tmt.h"

#define APIT_APPLIANCE "00112233aabbccdd"
#define APIT_TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* Bounds a raw socket read, so that a server that never answers fails the
 * test instead of hanging it. */
#define APIT_IO_TIMEOUT_S 20

typedef struct apit_server {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    bool running;
    bool stopped;
    tm_http_server_t *srv;
    int port;
    tm_http_config_t cfg;       /* set by apit_init; tests may change limits before apit_start */
    tm_http_stats_t stats;      /* copied just before the server closes */
    unsigned slow_pending;      /* /slow requests not yet replied (server thread) */
    unsigned slow_gone;         /* of those replied, how many had lost their client */
} apit_server_t;

/* Ignore SIGPIPE, count tm_malloc allocations from here on (apit_stop
 * asserts none is left), fill t->cfg with the toy routes. */
void apit_init(apit_server_t *t);
/* Listen on 127.0.0.1:0 and run the loop on a thread. */
void apit_start(apit_server_t *t);
/* Close the server from its thread (waiting for /slow replies), join it,
 * assert uv_loop_close() == 0 and that every allocation was freed. */
void apit_stop(apit_server_t *t);

/* Ask /pending until n /slow requests are with their handler (deadline:
 * APIT_IO_TIMEOUT_S). */
void apit_wait_pending(const apit_server_t *t, unsigned n);

/* ---- libcurl -------------------------------------------------------------------- */

typedef struct apit_resp {
    long status;
    char body[65536];
    size_t body_len;
    char headers[8192];
    json_t *json;   /* parsed body, or NULL */
    long connects;  /* new connections curl made for this request */
} apit_resp_t;

/* One request with curl (on handle h when not NULL: its connection is
 * reused). token NULL: no Authorization header; ctype NULL: none; body
 * NULL: none. Asserts curl itself succeeded. */
void apit_curl(const apit_server_t *t, void *h, const char *method, const char *path, const char *token,
               const char *ctype, const void *body, size_t len, apit_resp_t *out);
void apit_resp_free(apit_resp_t *r);
/* The error object's code in a response (asserts its shape: appliance, error.code, error.message). */
const char *apit_error_code(const apit_resp_t *r);
const char *apit_error_message(const apit_resp_t *r);
/* A response header's value (first one, any case), into a static buffer; NULL when absent. */
const char *apit_header(const char *headers, const char *name);

/* ---- raw client ---------------------------------------------------------------------- */

int apit_connect(int port);
void apit_send(int fd, const void *p, size_t n);
void apit_send_str(int fd, const char *s);
/* Send, not asserting: a server that closed may refuse the rest. false on error. */
bool apit_try_send(int fd, const void *p, size_t n);

/* One response read from a raw socket. */
typedef struct apit_raw {
    int status;
    char head[8192];
    char body[65536];
    size_t body_len;
    json_t *json;
} apit_raw_t;

/* Read one whole response (Content-Length framed); false on EOF before
 * its first byte. */
bool apit_read_response(int fd, apit_raw_t *r);
void apit_raw_free(apit_raw_t *r);
/* True when the server closed the connection (EOF or reset) with nothing
 * more to read. */
bool apit_at_eof(int fd);
/* Close with a reset (SO_LINGER 0) instead of a FIN. */
void apit_close_reset(int fd);

#endif
