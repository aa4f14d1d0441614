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
 * does a STOP's final tag. An app tag's quiesce pauses generating
 * (agent/quiesce.h) and runs the scripts like the tap agent's. A STOP
 * pauses generating until RESUME (what was generated is in the stream
 * already, so the final tag comes at once); the time stopped does not
 * count against the rate or the duration.
 */
#ifndef TM_AGENT_REPLAY_H
#define TM_AGENT_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    const char *pre_script; /* app tags (agent/quiesce.h); NULL none */
    const char *post_script;
    unsigned script_timeout_ms; /* 0: AGENT_SCRIPT_TIMEOUT_MS */
} agent_replay_opts_t;

/* Run the workload until it is generated and acknowledged (or a second
 * SIGINT/SIGTERM). Prints a summary on stdout. Returns 0 when every record
 * was acknowledged, 1 otherwise. */
int agent_replay_run(const agent_replay_opts_t *o);

#endif
