/*
 * The ingest stage: a libuv TCP server that takes agents' streams (the
 * agent protocol, wire/) and makes every batch durable in the journal before
 * it acknowledges it. README.md in this folder has the rules that span the
 * files; docs/ingest-records.md the journal payloads it writes.
 *
 * Threads: every function here runs on the loop's thread. The journal's
 * writer thread only ever touches a mutex-protected completion queue and the
 * uv_async handle that wakes the loop.
 */
#ifndef TM_INGEST_H
#define TM_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "journal/journal.h"

#define INGEST_DEFAULT_ADDR "127.0.0.1:7707"
#define INGEST_DEFAULT_WINDOW (16u << 20)  /* raw bytes unacknowledged per connection */
#define INGEST_DEFAULT_BUDGET (256u << 20) /* bytes queued in the journal, all agents */
#define INGEST_MIN_WINDOW (1u << 20)
#define INGEST_MIN_BUDGET (16u << 20)
/* Frames decoded per connection per wakeup before others get their turn. */
#define INGEST_FRAMES_PER_TURN 16u
/* A connection that has not finished its handshake by then is closed. */
#define INGEST_HANDSHAKE_MS 30000u
/* After an ERROR, how long the server waits for the agent to close. */
#define INGEST_LINGER_MS 5000u

typedef struct ingest ingest_t;

typedef struct ingest_options {
    const char *data_dir;  /* holds machines.conf */
    const char *listen;    /* "HOST:PORT" or "[V6]:PORT"; port 0 picks one */
    uint32_t window_bytes; /* 0 = INGEST_DEFAULT_WINDOW */
    uint64_t budget_bytes; /* 0 = INGEST_DEFAULT_BUDGET */
    const char *server_id; /* sent in CHALLENGE; NULL = "tidemark" */
} ingest_options_t;

/*
 * Rebuild each machine's state from the journal (its disks, its last durable
 * stream sequence), read the registry and listen. On error nothing is left
 * running and err says why: TM_EINVAL (a bad address), TM_EVERSION or
 * TM_ECORRUPT (a journal record ingest cannot read), a libuv error (bind).
 */
int ingest_start(uv_loop_t *loop, jnl_t *jnl, const ingest_options_t *opts, ingest_t **out, char *err,
                 size_t errlen);

/* The address actually listened on ("127.0.0.1:40123"), for port 0. */
void ingest_address(const ingest_t *ig, char *buf, size_t len);

typedef void (*ingest_stopped_cb)(void *arg);

/*
 * Stop: close the listener and every connection, wait for the journal
 * appends already made to complete, free everything, then call cb(arg) on the
 * loop thread (never from inside ingest_stop). The journal may be closed
 * from cb. Calling it twice is a bug.
 */
void ingest_stop(ingest_t *ig, ingest_stopped_cb cb, void *arg);

#endif
