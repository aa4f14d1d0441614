/*
 * The agent's session with the appliance, on a libuv loop: connect, HELLO,
 * answer the CHALLENGE with AUTH, take the WELCOME's next_seq as the resume
 * point of the stream, then send RECORDS batches from the stream within the
 * server's window and drop what each ACK covers.
 *
 * The session never ends on its own: after any disconnect (refused, lost,
 * an ERROR frame) it reconnects with exponential backoff, 100 ms doubling to
 * 5 s, and says why each time in one log line. A refusal (auth, busy,
 * version, disks, stopped) keeps retrying at the longest delay and is logged
 * at most every 30 s; `stopped` says that replication of the machine was
 * stopped on the appliance (its failover was committed), with the
 * appliance's reason. Every reconnection resends exactly from the new
 * WELCOME's next_seq, so the server never sees a gap or a repeat.
 *
 * The stream is the caller's; producers append to it and call
 * agent_client_kick(). Threads: everything on the loop's thread.
 */
#ifndef TM_AGENT_CLIENT_H
#define TM_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "agent/stream.h"
#include "wire/msg.h"

#define AGENT_SECRET_LEN 32u      /* bytes; the secret file holds them as 64 hex characters */
#define AGENT_AUTH_CONTEXT "tidemark-auth-v1"
#define AGENT_BACKOFF_MIN_MS 100u
#define AGENT_BACKOFF_MAX_MS 5000u
#define AGENT_REFUSAL_LOG_MS 30000u /* a repeated refusal is logged at most this often */
#define AGENT_MAX_WRITES 4u         /* RECORDS frames queued on the socket at once */

typedef struct agent_client agent_client_t;

typedef struct agent_client_cbs {
    /* A session is up: the stream resumed at w->next_seq; w->disk_state[d]
     * says whether disk d still needs its initial copy (WIRE_DISK_NEW).
     * w->ndisks is the HELLO's count (the client checked). Optional. */
    void (*welcome)(agent_client_t *c, const wire_welcome_t *w, void *arg);
    /* An ACK moved the stream forward: room may be free, flushes may be
     * covered. Optional. */
    void (*acked)(agent_client_t *c, uint64_t durable_seq, void *arg);
    /* The server sent STOP (a planned failover): take no new writes; once
     * every write accepted before it is in the stream, append a crash tag
     * with m->id and m->name, the final tag (agent_quiesce_stop), and go on
     * sending. The stop outlives reconnections, until RESUME. Optional:
     * without it the client appends the tag at once. */
    void (*stop)(agent_client_t *c, const wire_stop_t *m, void *arg);
    /* The server sent RESUME: take writes again. Also sent to an agent that
     * is not stopped (the server repeats it after a reconnection): nothing
     * to do then. Optional. */
    void (*resume)(agent_client_t *c, const char *reason, void *arg);
    /* The server sent TAG_REQUEST (kind WIRE_TAG_*, id, a wire name): the
     * producer tags its stream (agent/quiesce.h). Optional: without it the
     * client appends the tag to the stream at once, whatever its kind. */
    void (*tag)(agent_client_t *c, uint8_t kind, uint64_t id, const char *name, void *arg);
    /* The server sent RESYNC_SUMS (decoded: its fields within their limits;
     * m->raw is valid during the call only). Whether it answers a request of
     * this session is the producer's to check (agent_client_abort if not).
     * Without it the frame ends the connection. */
    void (*sums)(agent_client_t *c, const wire_resync_sums_t *m, void *arg);
    /* Group rounds (docs/agent-protocol.md, "Group rounds"; the producer
     * hands them to agent/quiesce.h). The server sent GROUP_PREPARE (m
     * decoded, within its limits): the producer answers with
     * agent_client_prepared(). Without it the client answers PREPARED
     * failed at once ("this agent takes no part in group rounds"). */
    void (*group_prepare)(agent_client_t *c, const wire_group_prepare_t *m, void *arg);
    /* GROUP_COMMIT and GROUP_ABORT of a round. Optional (nothing is held
     * without group_prepare). */
    void (*group_commit)(agent_client_t *c, uint64_t round, void *arg);
    void (*group_abort)(agent_client_t *c, uint64_t round, void *arg);
    /* A session that reached its WELCOME ended (lost, refused, an ERROR):
     * called from the loop once its connection is closed, never from inside
     * another call of the client, before the reconnection. Optional. */
    void (*down)(agent_client_t *c, void *arg);
} agent_client_cbs_t;

typedef struct agent_client_opts {
    const char *server;        /* "HOST:PORT" (base/addr.h) */
    const char *machine;       /* a wire name */
    const char *agent_version; /* for the HELLO; NULL: "tidemark-agent" */
    uint8_t secret[AGENT_SECRET_LEN];
    unsigned ndisks;           /* 1..WIRE_MAX_DISKS */
    const wire_disk_t *disks;  /* copied */
    bool compress;             /* lz4 the batches' data */
    unsigned backoff_min_ms;   /* 0: AGENT_BACKOFF_MIN_MS */
    unsigned backoff_max_ms;   /* 0: AGENT_BACKOFF_MAX_MS */
} agent_client_opts_t;

typedef struct agent_client_stats {
    uint64_t connects;     /* sessions that reached WELCOME */
    uint64_t batches;      /* RECORDS frames sent */
    uint64_t records_sent; /* including resends */
    uint64_t bytes_sent;   /* frame bytes on the socket */
    uint64_t acks;
    bool connected;        /* in a session now */
    bool stopped;          /* the server sent STOP, and no RESUME since */
    /* group rounds, as the producer noted them (agent_client_note_round) */
    uint64_t rounds_committed; /* the group tag was appended */
    uint64_t rounds_aborted;   /* released without a tag: GROUP_ABORT, the session ended, ... */
    uint64_t rounds_timed_out; /* released without a tag: the hold limit passed without a decision */
    uint64_t rounds_failed;    /* never held: PREPARED failed (stopped, busy, a pre-script, ...) */
    uint64_t hold_max_us;      /* the longest hold of any round */
    /* timed-out rounds whose writes went after the hold limit itself: the
     * agent acts on it a margin before it passes (WIRE_GROUP_HOLD_MARGIN_US),
     * so these are rounds its loop did not run in time (blocked or
     * overloaded); their holds are in the figures as they were, these say
     * how many and how late */
    uint64_t rounds_late;
    uint64_t late_max_us;      /* the latest such release, past the limit */
} agent_client_stats_t;

/* How a group round ended at this agent. */
typedef enum {
    AGENT_ROUND_COMMITTED = 1,
    AGENT_ROUND_ABORTED = 2,
    AGENT_ROUND_TIMED_OUT = 3,
    AGENT_ROUND_FAILED = 4,
} agent_round_outcome_t;

/* One group round as this agent saw it. */
typedef struct agent_round_rec {
    uint64_t round;
    uint64_t hold_us;  /* from the hold's start to the release; 0 when it never held */
    uint64_t late_us;  /* timed out: how long after the hold limit the agent acted on it (released
                        * the writes; app rounds: started the post-script); 0 otherwise */
    uint64_t released_ns; /* uv_hrtime() (CLOCK_MONOTONIC) at the release; 0 when it never held */
    uint8_t kind;      /* WIRE_TAG_CRASH or WIRE_TAG_APP */
    uint8_t outcome;   /* agent_round_outcome_t */
} agent_round_rec_t;

/* The rounds a client remembers (the newest; the counts cover all). */
#define AGENT_ROUND_HISTORY 4096u

/*
 * Make a client on loop for stream s. Returns 0, TM_EINVAL (a bad address,
 * machine or disk name, disk count) or -ENOMEM. It does nothing until
 * agent_client_start().
 */
int agent_client_new(uv_loop_t *loop, const agent_client_opts_t *o, agent_stream_t *s,
                     const agent_client_cbs_t *cbs, void *arg, agent_client_t **out);

/* Connect (and keep reconnecting). Once. */
void agent_client_start(agent_client_t *c);

/* Records were appended: send them when the window allows. Cheap; batches
 * whatever was appended within one loop iteration. */
void agent_client_kick(agent_client_t *c);

/* Resync frames on the live session: 0, TM_ECLOSED when there is no
 * session past its WELCOME (the request is made again at the next one), or
 * -ENOMEM. */
int agent_client_resync_request(agent_client_t *c, const wire_resync_request_t *q);
int agent_client_resync_ack(agent_client_t *c, uint16_t disk, uint16_t frames);

/* The server broke the protocol in a way only the producer can tell: log
 * why, drop the connection and reconnect (as after any error). */
void agent_client_abort(agent_client_t *c, const char *why);

void agent_client_get_stats(const agent_client_t *c, agent_client_stats_t *st);

/* PREPARED on the live session: 0, TM_ECLOSED when there is no session
 * past its WELCOME (nothing is sent later: the round is over for the
 * agent), TM_EINVAL for a body the decoder would refuse, or -ENOMEM. */
int agent_client_prepared(agent_client_t *c, const wire_prepared_t *m);

/* The producer's record of a round that ended (kept in the stats, the
 * history and the percentiles below). */
void agent_client_note_round(agent_client_t *c, const agent_round_rec_t *r);

/* The rounds remembered, oldest first, at most max of the newest; returns
 * how many were copied. */
size_t agent_client_rounds(const agent_client_t *c, agent_round_rec_t *out, size_t max);

/* The p-th percentile (0..100, nearest rank) of the hold times, in
 * microseconds, of the remembered rounds that held (every outcome but
 * FAILED); 0 when none did. */
uint64_t agent_client_hold_percentile(const agent_client_t *c, double p);

/* One line for a log: "group rounds: N committed, N aborted, N timed
 * out, N failed; hold p50 X ms, p99 Y ms, max Z ms", and ", N late at
 * the hold limit (acted on up to W ms after it)" when some were. */
void agent_client_round_summary(const agent_client_t *c, char *buf, size_t len);

/* Close the connection and every handle; the client frees itself and then
 * calls cb(arg) from the loop. Call once; c is invalid from here on. */
void agent_client_close(agent_client_t *c, void (*cb)(void *arg), void *arg);

/*
 * Read a secret file: 64 hex characters (surrounding whitespace allowed) into
 * out. Returns 0, or TM_EINVAL / -errno with a sentence in err.
 */
int agent_secret_read(const char *path, uint8_t out[AGENT_SECRET_LEN], char *err, size_t errlen);

/* The AUTH MAC: HMAC-SHA256 keyed with the secret over
 * AGENT_AUTH_CONTEXT | nonce | machine. 0 or TM_EINVAL. */
int agent_auth_mac(const uint8_t secret[AGENT_SECRET_LEN], const uint8_t nonce[WIRE_NONCE_LEN],
                   const char *machine, uint8_t mac[WIRE_MAC_LEN]);

#endif
