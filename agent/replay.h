/*
 * `tidemark agent replay`: a seeded synthetic workload streamed to the
 * appliance like a real agent's, for benchmarks and tests.
 *
 * The workload is a comma-separated list of key=value (agent_workload_parse):
 *
 *   disks=N          disks of the machine, named disk0..disk<N-1> (1..64; 1)
 *   size=BYTES       each disk's size, K/M/G/T suffixes (1G)
 *   rate=BYTES/s     write bandwidth, same suffixes; 0 as fast as possible (0)
 *   bs=SIZE:W,...    write sizes with weights, e.g. bs=4k:70,64k:30 (a
 *                    token without '=' continues the bs list); sizes are
 *                    multiples of 512 up to 1M; a weight left out is 1 (4k)
 *   locality=0..1    fraction of writes that continue where the previous one
 *                    ended (0.5)
 *   compress=0..1    fraction of each write's bytes that compress well (0.5)
 *   duration=SECONDS how long to generate, or
 *   count=N          the stream ends at sequence N (records, tags included);
 *                    (default duration=10)
 *   seed=S           (1)
 *   tags=N           an app tag after every N writes; 0 none (0)
 *
 * Records 1..disks are SYNCED for disks 0..disks-1: a replay disk starts
 * all zero like the appliance's copy of it, so its initial copy is complete
 * at once. Everything about record seq (kind, disk, offset, length, bytes,
 * tag id and name) is a pure function of (workload, seq): a restarted replay agent
 * regenerates exactly the records the server is missing after its WELCOME,
 * and a test can check every journaled record against the generator. A tag
 * the appliance asks for (TAG_REQUEST) is the exception: it takes the next
 * sequence, and the generator's record of that sequence is never made; so
 * does a STOP's final tag, and a group round's group tag. An app tag's
 * quiesce pauses generating (agent/quiesce.h) and runs the scripts like
 * the tap agent's; so does a group round's hold (its held "writes" are the
 * generator paused: what it generated before is in the stream, and the
 * group tag follows it). A STOP pauses generating until RESUME (what was
 * generated is in the stream already, so the final tag comes at once); the
 * time stopped does not count against the rate or the duration.
 *
 * Besides `tidemark agent replay` (agent_replay_run, a loop of its own),
 * replay agents run embedded on a caller's loop (agent_replay_new): tests
 * and benchmarks run a hundred machines in one process that way, and read
 * each one's client stats (hold times of group rounds, agent/client.h).
 */
#ifndef TM_AGENT_REPLAY_H
#define TM_AGENT_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "wire/msg.h"

#define AGENT_WL_MAX_BS 16u

typedef struct agent_workload {
    unsigned disks;
    uint64_t size;
    uint64_t rate;          /* bytes/s, 0 unlimited */
    unsigned nbs;
    uint32_t bs[AGENT_WL_MAX_BS];
    uint32_t bs_weight[AGENT_WL_MAX_BS];
    uint32_t bs_total;      /* sum of the weights */
    uint32_t bs_max;
    double locality;
    double compress;
    double duration;        /* seconds; used when count is 0 */
    uint64_t count;         /* last sequence of the stream; 0: duration decides */
    uint64_t seed;
    uint64_t tags;          /* writes between two tags; 0 none */
} agent_workload_t;

/* Parse spec into *w (defaults for what it does not name). 0, or TM_EINVAL
 * with a sentence naming the key and what is allowed in err. */
int agent_workload_parse(const char *spec, agent_workload_t *w, char *err, size_t errlen);

/* The disk names of a workload: "disk<i>". out holds WIRE_MAX_NAME + 1. */
void agent_workload_disk_name(unsigned i, char *out);

/*
 * Generate record seq (>= 1): *e gets kind, disk, offset, length, tag kind,
 * id; e->data points into buf (w->bs_max bytes, caller-owned) for a write, or
 * into name (WIRE_MAX_NAME + 1 bytes) for a tag. A pure function of (w, seq);
 * gen is an optional cache (zeroed before first use) that makes consecutive
 * calls cheaper and never changes the result.
 */
typedef struct agent_wl_gen {
    uint64_t w;       /* the write index cached, 0 none */
    uint64_t off;
    uint32_t len;
    uint16_t disk;
} agent_wl_gen_t;

void agent_workload_record(const agent_workload_t *w, agent_wl_gen_t *gen, uint64_t seq, wire_entry_t *e,
                           uint8_t *buf, char *name);

typedef struct agent_replay_opts {
    const char *server;
    const char *machine;
    const uint8_t *secret;  /* AGENT_SECRET_LEN bytes */
    agent_workload_t workload;
    size_t queue_bytes;     /* the stream's bound; 0 default */
    const char *pre_script; /* app tags and app group rounds (agent/quiesce.h); NULL none */
    const char *post_script;
    unsigned script_timeout_ms; /* 0: AGENT_SCRIPT_TIMEOUT_MS */
    unsigned backoff_max_ms;    /* the client's longest reconnect delay; 0: AGENT_BACKOFF_MAX_MS */
    /* Embedded (agent_replay_new): called once, on the loop, when the
     * workload is generated and every record of it acknowledged (possibly
     * from inside agent_replay_finish); NULL none. agent_replay_run sets
     * its own. */
    void (*done)(void *arg);
    void *done_arg;
} agent_replay_opts_t;

/* Run the workload until it is generated and acknowledged (or a second
 * SIGINT/SIGTERM), on a loop of its own. Prints a summary on stdout and
 * logs one of its group rounds. Returns 0 when every record was
 * acknowledged, 1 otherwise, 2 for a bad address or machine name. */
int agent_replay_run(const agent_replay_opts_t *o);

/* ---- embedded: replay agents on the caller's loop (its thread only) ---- */

typedef struct agent_client agent_client_t;
typedef struct agent_replay agent_replay_t;

/* Make an agent on loop (nothing runs until agent_replay_start). 0,
 * TM_EINVAL (a bad address, machine name or disk count) or -ENOMEM. */
int agent_replay_new(uv_loop_t *loop, const agent_replay_opts_t *o, agent_replay_t **out);
/* Connect (and reconnect) and generate from the first WELCOME on. Once. */
void agent_replay_start(agent_replay_t *r);
/* Its client: stats, group rounds (agent/client.h). Valid until close. */
agent_client_t *agent_replay_client(agent_replay_t *r);
/* Generate no more; done() follows once what was generated is acknowledged. */
void agent_replay_finish(agent_replay_t *r);
/* True once done() was called: generated and acknowledged. */
bool agent_replay_done(const agent_replay_t *r);
bool agent_replay_all_acked(const agent_replay_t *r);
/* The one-line summary agent_replay_run prints. */
void agent_replay_summary(const agent_replay_t *r, char *buf, size_t len);
/* Close the connection and every handle at once (whatever is not
 * acknowledged is dropped), free r, then cb(arg) from the loop. */
void agent_replay_close(agent_replay_t *r, void (*cb)(void *arg), void *arg);

#endif
