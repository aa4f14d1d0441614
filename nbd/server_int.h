/*
 * Inside the server: the connection and request structures and the
 * functions its files share. server.c has the listener, the queue of
 * connections to decode again and the server's life; conn.c a connection's
 * input, decoder, output and closing; option.c the handshake's options;
 * request.c transmission requests. The rules across them are in
 * nbd/README.md. Not for other modules.
 */
#ifndef TM_NBD_SERVER_INT_H
#define TM_NBD_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "nbd/nbd_int.h"

#define NBD_RBUF_SIZE (64u << 10)                /* input staging per connection */
#define NBD_CONN_MAX_INFLIGHT 64u                /* requests decoded, not yet replied, per connection */
#define NBD_CONN_MAX_INFLIGHT_BYTES (64u << 20)  /* their payload bytes (one request may overshoot) */
#define NBD_DECODE_BUDGET 32u                    /* options or requests decoded per connection per wakeup */
#define NBD_LISTEN_BACKLOG 128

_Static_assert(NBD_RBUF_SIZE >= NBD_REQ_HDR_LEN && NBD_RBUF_SIZE >= NBD_OPT_HDR_LEN,
               "a header must fit the staging buffer");

#define nbd__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef enum nbd_state {
    NBD_ST_FLAGS,    /* waiting for the client flags */
    NBD_ST_OPT_HDR,  /* waiting for an option header */
    NBD_ST_OPT_DATA, /* receiving option data into c->opt_data */
    NBD_ST_OPT_WAIT, /* an open or a listing is with the backend */
    NBD_ST_REQ_HDR,  /* waiting for a request header */
    NBD_ST_REQ_DATA, /* receiving a WRITE's payload into c->cur */
    NBD_ST_DISCARD,  /* skipping the payload of a refused WRITE; c->cur holds its reply */
    NBD_ST_END,      /* nothing more is read (DISC, ABORT) */
} nbd_state_t;

typedef struct nbd_conn nbd_conn_t;

/* One transmission request, from its header to its reply's write callback. */
typedef struct nbd_req {
    nbd_io_t io; /* what the backend sees */
    nbd_conn_t *conn;
    struct nbd_req *prev, *next; /* c->pending, while the backend has it */
    uint16_t type;
    uint64_t handle;
    bool with_backend; /* between nbd__req_submit() and nbd_io_done() */
    uint32_t got;    /* WRITE payload bytes received */
    uint32_t error;  /* NBD error value for the reply */
    size_t charge;   /* bytes counted in c->inflight_bytes */
    uv_write_t wreq;
    uint8_t hdr[NBD_REPLY_HDR_LEN];
    uint8_t payload[]; /* READ and WRITE data */
} nbd_req_t;

/* Handshake bytes on their way out (greeting, option replies). */
typedef struct nbd_out {
    uv_write_t wreq;
    nbd_conn_t *conn;
    uint8_t bytes[];
} nbd_out_t;

struct nbd_conn {
    uv_tcp_t tcp;
    uv_shutdown_t shut;
    nbd_server_t *srv;
    nbd_conn_t *prev, *next;             /* srv->conns */
    nbd_conn_t *ready_prev, *ready_next; /* srv's ready queue, when c->ready */
    bool ready;
    char peer[64];
    nbd_state_t state;

    uint8_t *rbuf;     /* NBD_RBUF_SIZE bytes; [rpos, rlen) not decoded yet */
    size_t rpos, rlen;
    bool reading;
    bool eof;          /* the client closed its side: no more input */
    bool paused;       /* decoding waits for in-flight requests to drain */

    bool no_zeroes;
    nbd_opt_hdr_t opt;
    uint8_t *opt_data;
    uint32_t opt_got;

    bool have_export;  /* transmission: export, size and tflags are set */
    void *export;
    uint64_t size;
    uint16_t tflags;
    nbd_req_t *cur;    /* REQ_DATA and DISCARD: the request being received */
    uint64_t discard_left;

    unsigned inflight; /* requests decoded and not yet replied (or freed) */
    size_t inflight_bytes;
    unsigned backend_pending; /* opens, listings and ios the backend has not completed */
    nbd_req_t *pending;       /* the ios among those */

    bool closing;  /* no more decoding; the handle closes once the backend is done */
    bool graceful; /* replies still go out, then shutdown, then close */
    bool shutting; /* uv_shutdown issued */
    bool closed;   /* uv_close issued */
};

struct nbd_server {
    uv_loop_t *loop;
    const nbd_backend_ops_t *ops;
    void *backend;
    uv_tcp_t listener;
    bool listener_init;
    bool listening;
    uv_idle_t idle; /* decodes what connections left buffered when their budget ran out */
    bool idle_active;
    nbd_conn_t *conns;
    nbd_conn_t *ready_head, *ready_tail; /* connections to decode again, oldest first */
    unsigned nready;
    unsigned handles; /* listener and idle, until their close callbacks */
    bool closing;
    nbd_close_cb close_cb;
    void *close_arg;
    nbd_server_stats_t stats;
};

/* ---- server.c ----------------------------------------------------------- */

/* Queue c to be decoded again from the loop (idle handle), not from inside
 * the current callback; no-op while closing or already queued. */
void nbd__conn_kick(nbd_conn_t *c);
void nbd__conn_ready_unlink(nbd_conn_t *c);
/* Free the server and call its close callback once nothing of it is left. */
void nbd__server_maybe_done(nbd_server_t *srv);

/* ---- conn.c ------------------------------------------------------------- */

/* Decode what is buffered, within the per-wakeup budget. */
void nbd__conn_process(nbd_conn_t *c);
/* Start or stop reading to match the connection's state. */
void nbd__conn_update_reading(nbd_conn_t *c);
/* End the connection: gracefully (answer what is in flight, flush, shut
 * down) or hard (drop every reply). A hard close may follow a graceful one. */
void nbd__conn_close(nbd_conn_t *c, bool graceful);
/* Close the handle once the backend holds nothing of the connection. */
void nbd__conn_finish(nbd_conn_t *c);
/* The client broke the protocol: log why (warning), count it, close hard. */
void nbd__conn_log_drop(nbd_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queue handshake bytes: up to three pieces copied into one write. */
void nbd__conn_send(nbd_conn_t *c, const void *a, size_t alen, const void *b, size_t blen, const void *d,
                    size_t dlen);
void nbd__conn_opt_reply(nbd_conn_t *c, uint32_t opt, uint32_t type, const void *data, size_t len);
/* An option reply carrying a formatted message (cut at NBD_MAX_NAME bytes). */
void nbd__conn_opt_error(nbd_conn_t *c, uint32_t opt, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- option.c ----------------------------------------------------------- */

/* Act on the whole option in c->opt / c->opt_data. */
void nbd__conn_option(nbd_conn_t *c);

/* ---- request.c ---------------------------------------------------------- */

/* Act on a decoded request header. */
void nbd__conn_request(nbd_conn_t *c, const nbd_req_hdr_t *h);
/* Hand a request (a WRITE once its payload is in) to the backend. */
void nbd__req_submit(nbd_req_t *r);
/* Queue the reply (header, and data for a successful READ); frees r once written. */
void nbd__req_reply(nbd_req_t *r);
void nbd__req_free(nbd_req_t *r);

#endif
