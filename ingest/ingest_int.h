/* Internals of ingest/, shared by its files only. */
#ifndef TM_INGEST_INT_H
#define TM_INGEST_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ingest/ingest.h"
#include "ingest/registry.h"
#include "journal/journal.h"
#include "wire/msg.h"
#include "wire/wire.h"

/* Read buffer shared by every connection: libuv calls alloc and read
 * callbacks back to back, and bytes left over are copied out. */
#define IG_READ_BUF (256u << 10)
/* A decoder body bigger than this goes back to the pool after its frame. */
#define IG_SMALL_BODY (64u << 10)
/* Spare frame bodies kept for busy connections. */
#define IG_BODY_POOL 8u
/* An agent that leaves this much of our output unread is dropped. */
#define IG_MAX_WRITE_QUEUE (1u << 20)
/* TCP keepalive on agents' connections: a dead peer is noticed after about
 * IDLE + INTVL x PROBES seconds (2 minutes) when nothing was in flight. */
#define IG_KEEPALIVE_IDLE_S 60
#define IG_KEEPALIVE_INTVL_S 10
#define IG_KEEPALIVE_PROBES 6

typedef struct ig_conn ig_conn_t;
typedef struct ig_resync ig_resync_t;

/* What a machine's next session is told after its WELCOME (control.c). */
typedef enum {
    IG_STOP_NONE = 0, /* nothing asked since start */
    IG_STOP_STOPPED,  /* STOP again, with the same final tag */
    IG_STOP_RESUMED,  /* RESUME: an agent still stopped from before takes writes again */
} ig_stop_t;

/* A machine's group round, as ingest knows it (group.c). */
typedef enum {
    IG_GRP_NONE = 0,  /* none open */
    IG_GRP_PREPARING, /* GROUP_PREPARE sent on session grp_gen; its caller waits for PREPARED */
    IG_GRP_HELD,      /* PREPARED held came; the caller decides (commit or abort) */
    IG_GRP_LOST,      /* held, then its session ended: the agent released, no decision reaches it */
} ig_grp_state_t;

/* One ingest_group_prepare's answer, owed to its caller until delivered. */
typedef struct ig_grp_call {
    struct ig_grp_call *next;
    ingest_prepared_cb cb;
    void *arg;
    char machine[WIRE_MAX_NAME + 1];
    uint64_t round;
    int status;
    uint64_t seq;
    char reason[WIRE_MAX_TEXT + 1];
} ig_grp_call_t;

/* A machine whose replication stopped for good (control.c). */
typedef struct ig_retired {
    char name[WIRE_MAX_NAME + 1];
    char reason[WIRE_MAX_TEXT + 1];
} ig_retired_t;

/* A protected machine as ingest knows it: from the journal and from
 * sessions. Lives as long as the server. */
typedef struct ig_machine {
    char name[WIRE_MAX_NAME + 1];
    wire_disk_t *disks; /* NULL until a disks record exists */
    uint16_t ndisks;
    uint64_t durable_seq;   /* every stream record <= this is durable */
    uint64_t next_seq;      /* the sequence the live session must send next */
    uint64_t synced;        /* bit d: disk d's initial copy is durable (a SYNCED record) */
    uint64_t resync;        /* bit d: disk d's resync is open (a durable RESYNC record, no SYNCED since) */
    unsigned inflight;      /* journal appends not completed */
    ig_conn_t *conn;        /* the session that owns the stream, if any */
    bool ack_due;           /* durable_seq moved: send an ACK this turn */
    struct ig_machine *ack_next;
    /* the appliance's requests (control.c) */
    bool retired;           /* replication stopped for good: nothing more of it is journaled */
    ig_stop_t stop;
    uint64_t stop_id;       /* the final tag of the last STOP */
    char stop_name[WIRE_MAX_NAME + 1];
    char stop_reason[WIRE_MAX_TEXT + 1];
    /* its group round (group.c) */
    ig_grp_state_t grp_state;
    uint64_t grp_round;
    uint64_t grp_gen;           /* the session asked (its conn gen) */
    uint64_t grp_deadline_ns;   /* asked + hold limit: past it, a held round is over at the agent */
    ig_grp_call_t *grp_call;    /* PREPARING: the caller's answer */
} ig_machine_t;

/* One journal append, alive until its completion was handled on the loop. */
typedef struct ig_append {
    jnl_append_req_t req;
    ig_machine_t *m;
    ig_conn_t *conn;       /* the session that sent it (may be gone: see conn_gen) */
    uint64_t conn_gen;
    uint64_t last_seq;     /* 0 for a disks record */
    uint32_t raw_len;      /* for the session's window */
    uint32_t bytes;        /* payload size, for the global budget */
    uint64_t synced;       /* bit d: the batch holds a SYNCED record for disk d */
    uint64_t resync_open;  /* ingest_rec_batch_resync's masks of the batch */
    uint64_t resync_close;
    int status;
    struct ig_append *next;
} ig_append_t;

typedef enum {
    IG_ST_HELLO,   /* waiting for HELLO */
    IG_ST_AUTH,    /* CHALLENGE sent, waiting for AUTH */
    IG_ST_WAIT,    /* authenticated; WELCOME waits for earlier appends */
    IG_ST_STREAM,  /* WELCOME sent; RECORDS flow */
    IG_ST_LINGER,  /* ERROR sent; draining until the agent closes */
    IG_ST_CLOSED,  /* uv_close called */
} ig_state_t;

struct ig_conn {
    uv_tcp_t tcp;
    ingest_t *ig;
    uint64_t gen;          /* unique per connection, for appends that outlive it */
    ig_state_t state;
    wire_decoder_t dec;
    char peer[64];
    ig_machine_t *m;       /* claimed machine (IG_ST_WAIT, IG_ST_STREAM) */
    /* handshake only; freed at WELCOME */
    wire_hello_t *hello;
    uint8_t nonce[WIRE_NONCE_LEN];
    bool known;            /* the hello named a registered machine */
    uint8_t secret[INGEST_SECRET_LEN];
    /* input left over after a turn's frame budget */
    uint8_t *pend;
    size_t pend_off, pend_len;
    bool reading;
    bool on_ready;         /* in ig->ready (has pend to work through) */
    ig_conn_t *ready_next, *ready_prev;
    ig_conn_t *next, *prev; /* all connections */
    uint64_t unacked_raw;   /* raw bytes received, not yet acknowledged */
    uint64_t deadline_ns;   /* handshake or linger deadline; 0 none */
    unsigned writes;        /* writes in flight */
    ig_resync_t *rs;        /* the resync this session asked for, while it runs (resync.c) */
};

struct ingest {
    uv_loop_t *loop;
    jnl_t *jnl;
    char *data_dir;
    char server_id[WIRE_MAX_TEXT + 1];
    char addr[80];
    uint32_t window;
    uint64_t budget;
    uint32_t handshake_ms;
    uv_tcp_t listener;
    uv_async_t async;
    uv_idle_t idle;
    uv_timer_t sweep;
    ingest_registry_t reg;
    bool reg_bad;           /* the last load failed (already logged) */
    /* machines */
    ig_machine_t **machines;
    size_t nmachines, cap_machines;
    ig_machine_t *ack_list;
    /* connections */
    ig_conn_t *conns;
    ig_conn_t *ready;
    size_t nconns;
    uint64_t next_gen;
    /* the shared decode state (loop thread only) */
    uint8_t *readbuf;
    bool readbuf_busy;
    wire_records_t *recs;
    uint8_t *scratch;
    uint8_t *pool[IG_BODY_POOL];
    unsigned npool;
    /* journal completions, handed from the writer thread */
    pthread_mutex_t mu;
    ig_append_t *done_head, *done_tail;
    unsigned inflight;     /* appends not yet handled on the loop */
    uint64_t queued_bytes; /* their payload bytes */
    bool paused;           /* over the budget: streaming sessions do not read */
    /* machines retired (control.c), from the options and since */
    ig_retired_t *retired;
    size_t nretired, cap_retired;
    /* resync: the block-sum provider and its calls not done yet */
    ingest_resync_provider_t provider;
    bool has_provider;
    unsigned sums_inflight;
    /* group rounds' answers, delivered on the loop's next turn (group.c) */
    uv_timer_t grp_timer;
    ig_grp_call_t *grp_due_head, *grp_due_tail;
    /* stopping */
    bool stopping;
    unsigned open_handles;
    ingest_stopped_cb stopped_cb;
    void *stopped_arg;
};

/* state.c */
ig_machine_t *ig_machine_find(ingest_t *ig, const char *name);
ig_machine_t *ig_machine_get(ingest_t *ig, const char *name); /* creates; NULL on OOM */
int ig_machine_set_disks(ig_machine_t *m, const wire_disk_t *disks, uint16_t n);
int ig_rebuild(ingest_t *ig, const ingest_options_t *opts, char *err, size_t errlen);
uint64_t ig_machine_all_disks(const ig_machine_t *m); /* the synced mask of a fully copied machine */
/* SYNCED records of a batch became durable: record them, and log the disks
 * and the machine that finished their initial copy (once each). */
void ig_machine_synced(ig_machine_t *m, uint64_t mask);
/* A durable batch opened (RESYNC) or closed (SYNCED) disks' resyncs. */
void ig_machine_resync(ig_machine_t *m, uint64_t open, uint64_t close);
void ig_machines_free(ingest_t *ig);

/* session.c */
void ig_conn_frame(ig_conn_t *c);          /* a whole frame is in c->dec */
void ig_conn_settled(ig_machine_t *m);     /* m->inflight reached 0 */
void ig_conn_append_done(ig_append_t *a);  /* on the loop, in LSN order */
/* The registry entry of name, re-reading DATA/machines.conf when the name is
 * unknown and the file changed since it was read (machines added while
 * serving); NULL when not registered. */
const ingest_reg_entry_t *ig_registry_lookup(ingest_t *ig, const char *name);

/* control.c */
const ig_retired_t *ig_retired_find(const ingest_t *ig, const char *name);
/* Send a request frame (what names it in the error) on c; a session we
 * cannot write to is of no use: it fails, and the agent reconnects (a
 * group round it was in ends with the session). */
int ig_send_request(ig_conn_t *c, const wire_buf_t *b, const char *what);
/* The options' retired machines, after the rebuild; 0, TM_EINVAL or -ENOMEM
 * with err filled. */
int ig_retired_init(ingest_t *ig, const ingest_options_t *opts, char *err, size_t errlen);
void ig_retired_free(ingest_t *ig);
/* c was just welcomed: tell it what the appliance asked of its machine. */
void ig_control_welcomed(ig_conn_t *c);
/* m's appends settled and m is retired: its session gets the ACK it is
 * due, then ERROR stopped. */
void ig_control_retire_conn(ig_machine_t *m);

/* The machine by name for a request: 0 with the live authenticated
 * session in *conn, TM_ENOTFOUND (neither registered nor known), or
 * -ENOTCONN (no authenticated session, or retired; *out is still set when
 * the machine is in the table). */
int ig_control_target(ingest_t *ig, const char *machine, ig_machine_t **out, ig_conn_t **conn);

/* group.c */
void ig_group_prepared(ig_conn_t *c);                /* a PREPARED frame is in c->dec */
void ig_group_conn_gone(ig_machine_t *m, ig_conn_t *c); /* c, m's session, ends */
void ig_group_retired(ig_machine_t *m);              /* m was retired: its round fails */
void ig_group_flush(ingest_t *ig);                   /* deliver the answers due */
void ig_group_free(ingest_t *ig);                    /* at the very end: nothing may be left */

/* resync.c */
void ig_resync_request(ig_conn_t *c); /* a RESYNC_REQUEST frame is in c->dec */
void ig_resync_ack(ig_conn_t *c);     /* a RESYNC_ACK frame is in c->dec */
void ig_resync_release(ig_conn_t *c); /* the session ends: drop its resync, orphan its calls */

/* server.c */
void ig_maybe_stopped(ingest_t *ig);
void ig_conn_fail(ig_conn_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ig_conn_close(ig_conn_t *c); /* at once, no ERROR */
int ig_conn_send(ig_conn_t *c, const wire_buf_t *b);
void ig_conn_update_reading(ig_conn_t *c);
void ig_budget_add(ingest_t *ig, uint32_t bytes);
const char *ig_conn_who(const ig_conn_t *c, char *buf, size_t len);

#endif
