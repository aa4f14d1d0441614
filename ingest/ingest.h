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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "journal/journal.h"
#include "wire/msg.h"

#define INGEST_DEFAULT_ADDR "127.0.0.1:7707"
#define INGEST_DEFAULT_WINDOW (16u << 20)  /* raw bytes unacknowledged per connection */
#define INGEST_DEFAULT_BUDGET (256u << 20) /* bytes queued in the journal, all agents */
#define INGEST_MIN_WINDOW (1u << 20)
/* Budgets under a few windows throttle every agent to about one batch in
 * flight; they are allowed so tests can make the server pause. */
#define INGEST_MIN_BUDGET (1u << 20)
/* Frames decoded per connection per wakeup before others get their turn. */
#define INGEST_FRAMES_PER_TURN 16u
/* A connection that has not finished its handshake by then is closed
 * (the default of ingest_options_t.handshake_ms). */
#define INGEST_HANDSHAKE_MS 30000u
/* After an ERROR, how long the server waits for the agent to close. */
#define INGEST_LINGER_MS 5000u

typedef struct ingest ingest_t;

/* A machine as a later stage (the points stage's index) already knows it,
 * for a start that does not read the whole journal. */
typedef struct ingest_known {
    const char *name;
    const wire_disk_t *disks; /* ndisks of them */
    uint16_t ndisks;
    uint64_t synced;          /* bit d: disk d's initial copy is durable */
    uint64_t seq;             /* its last durable stream sequence */
    uint64_t resync;          /* bit d: disk d's resync is open (a durable RESYNC record not yet
                                 followed by its SYNCED); 0 when the index does not say */
} ingest_known_t;

/* Resync (docs/agent-protocol.md, "Resync"): disk bytes the provider reads
 * for one call, and calls in flight per session. A call's sums are one
 * RESYNC_SUMS frame. */
#define INGEST_RESYNC_CALL_BYTES (64u << 20)
#define INGEST_RESYNC_CALLS 2u

/*
 * One call of the block-sum provider: the XXH3-64 of each of `count`
 * blocks of block_size bytes from first_block on, of disk `disk` of
 * `machine` as the appliance holds it at some stream sequence >= min_seq
 * (the machine's latest durable one is what ingest wants). The disk's last
 * block may be short: its sum covers the bytes inside the disk.
 */
typedef struct ingest_sums_req {
    /* ingest's, read only for the provider */
    char machine[WIRE_MAX_NAME + 1];
    uint16_t disk;
    char disk_name[WIRE_MAX_NAME + 1];
    uint64_t disk_size;
    uint32_t block_size;
    uint64_t first_block;
    uint32_t count;        /* 1..WIRE_MAX_SUMS */
    uint64_t min_seq;
    uint64_t *sums;        /* count slots for the provider to fill */
    /* the provider's answer, set before ingest_sums_done */
    uint64_t seq;          /* the stream sequence the sums are as of */
    int status;            /* 0, or an error (err says it for a person) */
    char err[200];
} ingest_sums_req_t;

/*
 * The block-sum provider (`tidemark serve`: cli/serve_resync.c, over the
 * points stage and target/). sums() starts the work and returns 0 at once;
 * the provider then calls ingest_sums_done(req) exactly once, later, on the
 * loop's thread (never from inside sums()). A nonzero return means it
 * could not start: no done follows. ingest_stop waits for every call to be
 * done.
 */
typedef struct ingest_resync_provider {
    int (*sums)(void *arg, ingest_sums_req_t *req);
    void *arg;
} ingest_resync_provider_t;

/* The provider finished req (on the loop's thread). */
void ingest_sums_done(ingest_sums_req_t *req);

typedef struct ingest_options {
    const char *data_dir;  /* holds machines.conf */
    const char *listen;    /* "HOST:PORT" or "[V6]:PORT"; port 0 picks one */
    uint32_t window_bytes; /* 0 = INGEST_DEFAULT_WINDOW */
    uint64_t budget_bytes; /* 0 = INGEST_DEFAULT_BUDGET */
    const char *server_id; /* sent in CHALLENGE; NULL = "tidemark" */
    uint32_t handshake_ms; /* 0 = INGEST_HANDSHAKE_MS */
    /* What is known of the machines from the journal's records below
     * known_lsn; ingest then reads only the records from known_lsn on, so
     * the journal may have retired the older ones. known_lsn 0: read the
     * whole journal (known is ignored). */
    const ingest_known_t *known;
    size_t nknown;
    uint64_t known_lsn;
    /* Block sums for agents' resync requests (copied); NULL: a resync
     * request gets ERROR `internal`. */
    const ingest_resync_provider_t *resync;
    /* Machines retired before this start (ingest_retire_machine), from the
     * caller's persistent state; the names are copied. Their agents are
     * refused with `stopped` as if retired now, with the reason
     * INGEST_RETIRED_REASON. */
    const char *const *retired;
    size_t nretired;
} ingest_options_t;

/* The ERROR text an agent of a machine in ingest_options_t.retired gets. */
#define INGEST_RETIRED_REASON "the machine was retired (its failover was committed)"

/*
 * Rebuild each machine's state from opts->known and the journal (its disks,
 * its last durable stream sequence), read the registry and listen. On error nothing is left
 * running and err says why: TM_EINVAL (a bad address), TM_EVERSION or
 * TM_ECORRUPT (a journal record ingest cannot read), a libuv error (bind).
 */
int ingest_start(uv_loop_t *loop, jnl_t *jnl, const ingest_options_t *opts, ingest_t **out, char *err,
                 size_t errlen);

/* The address actually listened on ("127.0.0.1:40123"), for port 0. */
void ingest_address(const ingest_t *ig, char *buf, size_t len);

/*
 * A machine's replication state, for the operator (the start report, the
 * API and status later). A machine is in INITIAL_COPY from its first session
 * until every one of its disks has a durable SYNCED record (its agent sent
 * the disk whole), then PROTECTED: from then on the journal holds every
 * change since a full copy; RESYNC while an agent that lost track of its
 * writes has a disk compared and its differing blocks sent (from the
 * RESYNC record to the SYNCED record of that disk). NEW: known only from batches whose disks record
 * is no longer in the journal (not expected in practice).
 */
typedef enum {
    INGEST_MACHINE_NEW = 0,
    INGEST_MACHINE_INITIAL_COPY = 1,
    INGEST_MACHINE_PROTECTED = 2,
    /* Every disk copied, but one or more is being resynced (a durable
     * RESYNC record of it without its SYNCED yet): the appliance's copy is
     * not crash-consistent until the resync ends. */
    INGEST_MACHINE_RESYNC = 3,
} ingest_machine_state_t;

typedef struct ingest_machine_info {
    char name[64];
    ingest_machine_state_t state;
    unsigned ndisks;      /* 0 while NEW */
    unsigned synced;      /* disks whose initial copy is durable */
    unsigned resyncing;   /* disks whose resync is open */
    uint64_t durable_seq; /* the last stream sequence held durably */
    int connected;        /* an agent is streaming now (1) or not (0) */
    int stopped;          /* its agent was asked to stop (ingest_request_stop), no resume since */
    int retired;          /* its replication was stopped for good (ingest_retire_machine) */
} ingest_machine_info_t;

/* "new", "initial-copy", "protected" or "resync". */
const char *ingest_machine_state_name(ingest_machine_state_t s);

/* The machines ingest knows (from the journal and from sessions since
 * start), in the order first seen: i from 0 to ingest_machine_count() - 1.
 * ingest_machine_at: 0, or TM_ENOTFOUND when i is out of range. */
size_t ingest_machine_count(const ingest_t *ig);
int ingest_machine_at(const ingest_t *ig, size_t i, ingest_machine_info_t *out);

/* One machine by name: 0, or TM_ENOTFOUND when ingest does not know it. */
int ingest_machine_state(const ingest_t *ig, const char *name, ingest_machine_info_t *out);

/* Whether name is a machine of this appliance: registered (DATA/machines.conf,
 * read again when it changed) or known from its data. On the loop. */
bool ingest_machine_known(ingest_t *ig, const char *name);

/*
 * Ask a machine's agent for a tag: TAG_REQUEST (tag_kind WIRE_TAG_CRASH or
 * WIRE_TAG_APP, id, name) on the machine's live session. The agent answers
 * in its stream, not here: a crash tag is appended at once; for an app tag it
 * runs its pre-script, holds new writes, drains the ones it accepted, appends
 * the tag, runs its post-script and releases the writes
 * (docs/agent-protocol.md, "Tag requests"). So 0 means sent, not tagged: the
 * tag record arrives later in the stream, or never (a failed pre-script).
 * id and name are the caller's (the point catalog's); name must pass
 * wire_name_ok.
 *
 * Returns 0 when sent; TM_EINVAL for a bad name or kind (WIRE_TAG_GROUP is
 * the consistency coordinator's, not asked for this way); TM_ENOTFOUND for a
 * machine that is neither registered nor known from the journal; TM_ECLOSED
 * when the machine has no connected, authenticated agent streaming right now
 * (none, or its session is still in its handshake); -ENOMEM, or a libuv
 * error when the frame could not be queued on the socket (the session is
 * then closed and the agent reconnects).
 */
int ingest_request_tag(ingest_t *ig, const char *machine, uint8_t tag_kind, uint64_t id, const char *name);

/*
 * Planned failover, from the source's side: STOP (id, name, reason) to the
 * machine's agent. The agent refuses new writes from then on (the tap
 * agent: EPERM to its NBD clients), waits until every write it accepted
 * before is in its stream, appends a crash tag with this id and name (the
 * final tag) and goes on sending until everything is acknowledged, still
 * connected (docs/agent-protocol.md, "Stop and resume"). Once the points
 * stage has processed that tag, the machine's stream is complete: the point
 * at the tag is the source disk, byte for byte. 0 means sent, as for
 * ingest_request_tag; the tag arrives in the stream.
 *
 * Ingest remembers the STOP until ingest_request_resume or
 * ingest_retire_machine (not across restarts): each later session of the
 * machine gets it again right after its WELCOME, so an agent that lost its
 * session (or restarted) before the STOP reached it stops too, and appends
 * the final tag again, after whatever it accepted meanwhile. The latest
 * tag with the id is the final one. A second STOP while stopped (a new id
 * and name) gives another tag, later in the stream, with nothing between.
 *
 * Returns 0 when sent (or, for a session authenticated and waiting for its
 * WELCOME, to be sent right after it); TM_EINVAL when name is not a wire
 * name (reason is cut to WIRE_MAX_TEXT bytes; NULL is ""); TM_ENOTFOUND for
 * a machine neither registered nor known from the journal; -ENOTCONN when
 * no agent of the machine is connected and authenticated, or the machine
 * is retired (nothing is remembered then); -ENOMEM, or a libuv error when
 * the frame could not be queued (the session is then closed, nothing is
 * remembered).
 */
int ingest_request_stop(ingest_t *ig, const char *machine, uint64_t id, const char *name, const char *reason);

/*
 * Cancel a STOP: RESUME to the machine's agent, which takes writes again
 * (an agent that is not stopped does nothing). Also remembered: each later
 * session of the machine gets RESUME after its WELCOME, so an agent still
 * stopped from a lost session resumes too.
 *
 * Returns 0 when sent (or due right after a WELCOME); TM_EINVAL for a NULL
 * machine; TM_ENOTFOUND as for ingest_request_stop; -ENOTCONN when no agent
 * is connected and authenticated, or the machine is retired; the machine
 * is marked resumed all the same (unless retired), so its next session
 * hears it. -ENOMEM or a libuv error as for ingest_request_stop.
 */
int ingest_request_resume(ingest_t *ig, const char *machine);

/*
 * Stop the machine's replication for good (a committed failover). Its
 * session, if any, takes nothing more: frames it sends from now on are
 * dropped; once every batch it sent before is durable it gets the ACK for
 * them and then ERROR `stopped` with reason, and is closed. From then on
 * every session of the machine that authenticates gets ERROR `stopped`
 * with reason (an agent without the machine's secret learns nothing:
 * `auth`, as for any machine), so nothing more of it reaches the journal.
 * Until the next start only: `tidemark serve` keeps the list and passes it
 * as ingest_options_t.retired. reason is cut to WIRE_MAX_TEXT bytes (NULL
 * or "": INGEST_RETIRED_REASON); a second call replaces it.
 *
 * Returns 0; TM_EINVAL for a NULL machine; TM_ENOTFOUND for a machine
 * neither registered nor known from the journal; -ENOMEM.
 */
int ingest_retire_machine(ingest_t *ig, const char *machine, const char *reason);

/*
 * Group rounds (docs/agent-protocol.md, "Group rounds"): the consistency
 * coordinator's two phases, on the machines' agents.
 *
 * ingest_group_prepare sends GROUP_PREPARE (round, kind WIRE_TAG_CRASH or
 * WIRE_TAG_APP, hold_ms, name: the group tag's) to the machine's welcomed
 * session. The agent (app rounds: after its pre-script) holds the
 * completion of new writes, waits until every write it accepted before is
 * in its stream and answers PREPARED; it never holds longer than hold_ms
 * without a decision (it then releases without a tag by itself).
 *
 * cb is called exactly once per call that returned 0, on the loop, never
 * from inside an ingest call (answers are delivered on the loop's next
 * turn), with:
 *   status 0: held; seq is the last record of the machine's stream before
 *      the hold: the group tag, if committed in time, follows it, and no
 *      record between them changes a disk (flushes and crash tags may be
 *      there). Not a promise that the tag will be seq + 1, nor that it
 *      will exist: the agent may have released at its hold limit before
 *      the COMMIT came (see ingest_group_commit).
 *   TM_EFAILED: no hold; reason says why: the agent's own (stopped, a
 *      pre-script that failed, busy with an app tag, another round open,
 *      an initial copy or resync running there, its hold limit passed
 *      before its stream drained), or ingest's from the machine's durable
 *      state, without asking the agent: "stopped" (a STOP was sent), "disk
 *      D: its initial copy is not complete: ...", "disk D: its resync is
 *      running: ..." (no consistent point can be cut there), or "group
 *      round R is still open on this machine (...)".
 *   -ECONNRESET, reason "disconnected": the session ended before PREPARED.
 *   -ECANCELED: ingest_group_abort came first ("aborted before the agent
 *      answered"), or the server is stopping.
 *   TM_EFAILED "the machine was retired": ingest_retire_machine came first.
 * machine is the machine's name and round the call's; reason is "" when
 * held; both valid during the call only.
 *
 * Returns 0 (cb follows); TM_EINVAL for a NULL machine, name or cb, a name
 * that is not a wire name, round 0, another kind, hold_ms 0 or over
 * WIRE_GROUP_MAX_HOLD_MS; TM_ENOTFOUND for a machine neither registered nor
 * known from the journal; -ENOTCONN when no agent of the machine is
 * streaming (none, still in its handshake, or the machine is retired);
 * TM_ECLOSED while ingest_stop runs; -ENOMEM, or a libuv error when the
 * frame could not be queued (the session is then closed). None calls cb.
 */
typedef void (*ingest_prepared_cb)(void *arg, const char *machine, uint64_t round, int status, uint64_t seq,
                                   const char *reason);
int ingest_group_prepare(ingest_t *ig, const char *machine, uint64_t round, uint8_t kind, uint32_t hold_ms,
                         const char *name, ingest_prepared_cb cb, void *arg);

/*
 * GROUP_COMMIT of a round the machine's agent answered held: it appends the
 * group tag (kind WIRE_TAG_GROUP, id = round, the prepare's name) after
 * everything before its hold, (app: runs its post-script,) and releases.
 * 0 means sent: an agent whose hold limit passed first has released
 * without a tag and ignores it, so a group point exists only where every
 * member's group tag of the round is in its stream. Returns 0; TM_EINVAL
 * for NULL, round 0, or a round not held here (never prepared, not
 * answered yet, failed, or already decided); TM_ENOTFOUND as for prepare;
 * -ENOTCONN when the session that held the round ended (the agent released
 * without a tag) or no agent is streaming; -ENOMEM or a libuv error when
 * the frame could not be queued (the session is then closed, which ends the
 * round at the agent).
 */
int ingest_group_commit(ingest_t *ig, const char *machine, uint64_t round);

/*
 * GROUP_ABORT: the agent releases without a tag (app: its post-script
 * runs). A prepare still waiting for its answer gets it now, -ECANCELED,
 * and a PREPARED that comes later is ignored. Returns 0 when sent, or when
 * nothing of the round is open here (never asked, failed, decided, or its
 * session ended: the agent released already); TM_EINVAL for NULL or round
 * 0; TM_ENOTFOUND as for prepare; -ENOTCONN when no agent is streaming and
 * nothing was open; -ENOMEM or a libuv error as for commit.
 */
int ingest_group_abort(ingest_t *ig, const char *machine, uint64_t round);

typedef void (*ingest_stopped_cb)(void *arg);

/*
 * Stop: close the listener and every connection, wait for the journal
 * appends already made to complete, free everything, then call cb(arg) on the
 * loop thread (never from inside ingest_stop). The journal may be closed
 * from cb. Calling it twice is a bug.
 */
void ingest_stop(ingest_t *ig, ingest_stopped_cb cb, void *arg);

#endif
