/*
 * Tags the appliance asks for (TAG_REQUEST), one at a time, in the order
 * asked. A crash tag is appended to the stream at once. An app tag is a
 * quiesce:
 *
 *   1. the pre-script, if one is configured (the application flushes and
 *      freezes; the writes it makes to get there go through as usual);
 *   2. hold: the producer takes no new write into the stream (it queues
 *      them, never fails them);
 *   3. drain: wait until every write the producer accepted before the hold
 *      is in the stream;
 *   4. the app tag is appended;
 *   5. the post-script, if one is configured (the application thaws);
 *   6. release: the held writes go on, in the order they came.
 *
 * A pre-script that fails (exit status not 0, killed, or not done within the
 * time limit) means no app tag: nothing is appended for the request, the
 * failure is logged as an error naming the tag and the cause, and the
 * post-script still runs so that whatever the pre-script froze is thawed.
 * Nothing is appended rather than a crash tag because every position of the
 * stream is already crash-consistent, and a point with the app tag's name
 * that is not app-consistent would mislead whoever asked. A post-script that
 * fails is logged; the tag stays (the application was quiesced when it was
 * appended).
 *
 * Scripts run as `/bin/sh -c CMD` through uv_spawn (the loop never waits for
 * them) in a process group of their own, with stdin from /dev/null, stdout
 * and stderr on the agent's stderr, and in their environment
 * TIDEMARK_TAG_NAME, TIDEMARK_TAG_ID and TIDEMARK_TAG_PHASE (pre or post).
 * One that outlives the time limit gets SIGKILL, its whole process group.
 *
 * Why the pre-script runs before the hold: quiescing an application makes
 * writes (fsfreeze and database checkpoints flush first) and waits for them
 * to complete; held, they would never complete and every pre-script of that
 * kind would run into its time limit. So a post-script must not wait for a
 * write to the machine's disks: writes are held while it runs.
 *
 * A STOP from the appliance (a planned failover, agent_quiesce_stop) takes
 * its turn in the same queue: the producer refuses new writes itself from
 * the moment the STOP arrives (nothing is held: a write is refused, not
 * queued, so that the final tag can come at all), the drain waits until
 * every write it accepted before the STOP is in the stream, and a crash tag
 * with the STOP's id and name is appended: the final tag. The appliance's
 * copy at that tag is the source disk. No script runs: the application is
 * not quiesced, its writes are refused. A RESUME drops a STOP whose tag is
 * not appended yet (agent_quiesce_resume).
 *
 * A group round (GROUP_PREPARE, docs/agent-protocol.md "Group rounds") is
 * the same machinery with the decision made elsewhere:
 *
 *   1. app rounds: the pre-script, as for an app tag;
 *   2. hold new writes, and start the hold limit's clock;
 *   3. drain: every write accepted before the hold is in the stream;
 *   4. PREPARED held, with the stream's last sequence: the group tag will
 *      follow it, and no write of the machine will be between them;
 *   5. wait for the appliance's decision: GROUP_COMMIT appends the group
 *      tag (tag kind WIRE_TAG_GROUP, id = the round, the PREPARE's name),
 *      GROUP_ABORT appends nothing;
 *   6. app rounds: the post-script;
 *   7. release the held writes, in order.
 *
 * The hold is never longer than the round's hold limit without a decision:
 * when it passes (counted from step 2, the drain included) the round ends
 * here without a tag (and a PREPARED failed if step 4 was not reached), and
 * a COMMIT of it that comes later is ignored (logged). The limit is a
 * deadline on the monotonic clock, not only a timer of the loop (which
 * fires late when an iteration of the loop is long): it is also checked
 * before and after every poll of the loop while held, before anything from
 * the appliance is handled (a COMMIT read after the deadline is too late,
 * even when the timer has not run yet), before PREPARED is sent, and when
 * the producer sees a new write or an ack (agent_quiesce_poll). A loop that
 * runs nothing at all (blocked) still holds the writes until it runs
 * again: the round's record then shows the true hold, and how long after
 * the limit the writes went (agent_round_rec_t.late_us, logged and
 * counted as late). The agent acts on the limit a margin before it passes
 * (WIRE_GROUP_HOLD_MARGIN_US: a tenth, at most 5 ms), so the loop's usual
 * lateness keeps holds within it. So is a round whose
 * session ended (agent_quiesce_session_lost). A round is refused at once
 * (PREPARED failed, nothing held) when another round is open, when an app
 * tag or a STOP's final tag is being taken, or when the producer says it
 * cannot name a point now (the round_refused hook: stopped, an initial copy
 * or a resync running, shutting down). App tag requests that come during
 * a round wait for it to end, like one app tag for another; crash tags are
 * appended at once, as always (they change no disk, so the group tag still
 * follows the round's sequence with no write between). Each round's
 * outcome and hold time go to the client's stats
 * (agent_client_note_round).
 *
 * Threads: the loop's only.
 */
#ifndef TM_AGENT_QUIESCE_H
#define TM_AGENT_QUIESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "agent/client.h"
#include "agent/stream.h"

#define AGENT_SCRIPT_TIMEOUT_MS 60000u /* default time limit of each script */
#define AGENT_TAG_QUEUE_MAX 64u        /* requests waiting their turn; more are refused (logged) */

typedef struct agent_quiesce agent_quiesce_t;

/* What the producer of the stream does for a quiesce; arg is the one given
 * to agent_quiesce_new. */
typedef struct agent_quiesce_hooks {
    /* Take no new write into the stream from now on: queue them. */
    void (*hold)(void *arg);
    /* True when every write accepted before hold() is in the stream. When
     * it was false, the producer calls agent_quiesce_check() once it may
     * have become true. */
    bool (*drained)(void *arg);
    /* The request is finished (whether it held or not): release the held
     * writes, in order. */
    void (*release)(void *arg);
    /* A STOP's final tag waits for this instead of drained() (NULL: it
     * waits for drained()): every write accepted before the STOP is in the
     * stream, and so is whatever else the appliance needs for the tag to
     * name a point (a disk's initial copy or resync that was running). The
     * producer calls agent_quiesce_check() when it may have become true. */
    bool (*final_drained)(void *arg);
    /* Why no group round can be taken now (stopped, a disk's initial copy
     * or resync running, the agent ending): true with a sentence in why
     * (at most len - 1 bytes, at most WIRE_MAX_TEXT), false when one can.
     * NULL: always. */
    bool (*round_refused)(void *arg, char *why, size_t len);
} agent_quiesce_hooks_t;

typedef struct agent_quiesce_opts {
    const char *pre_script;  /* NULL or "": none */
    const char *post_script; /* NULL or "": none */
    unsigned timeout_ms;     /* each script's time limit; 0: AGENT_SCRIPT_TIMEOUT_MS */
} agent_quiesce_opts_t;

/* 0, or -ENOMEM. The strings are copied. */
int agent_quiesce_new(uv_loop_t *loop, const agent_quiesce_opts_t *o, agent_stream_t *s,
                      const agent_quiesce_hooks_t *hooks, void *arg, agent_quiesce_t **out);

/* The client whose agent_client_kick() sends an appended tag (may be set
 * after new, and to NULL once the client is closed). */
void agent_quiesce_set_client(agent_quiesce_t *q, agent_client_t *c);

/* A TAG_REQUEST from the appliance (agent_client_cbs_t.tag). */
void agent_quiesce_request(agent_quiesce_t *q, uint8_t kind, uint64_t id, const char *name);

/* A STOP from the appliance (agent_client_cbs_t.stop), after the producer
 * began refusing new writes: the final tag (id, name) is appended once
 * final_drained() (or drained()) says so, in turn with app tags. */
void agent_quiesce_stop(agent_quiesce_t *q, uint64_t id, const char *name);

/* A RESUME: STOPs whose final tag is not appended yet are dropped (logged);
 * app tag requests go on. */
void agent_quiesce_resume(agent_quiesce_t *q);

/* Group rounds, from the client's callbacks (agent_client_cbs_t). PREPARED
 * goes out through the client set with agent_quiesce_set_client. */
void agent_quiesce_group_prepare(agent_quiesce_t *q, const wire_group_prepare_t *m);
void agent_quiesce_group_commit(agent_quiesce_t *q, uint64_t round);
void agent_quiesce_group_abort(agent_quiesce_t *q, uint64_t round);
/* The session ended (agent_client_cbs_t.down): an open round ends here
 * without a tag, since its decision can no longer come. */
void agent_quiesce_session_lost(agent_quiesce_t *q);
/* Something came in while writes may be held (a new write, an ack): a
 * group round past its hold limit ends here at once (released without a
 * tag), before the producer decides whether to hold what came. The
 * quiesce checks the limit itself on a timer and around every poll of the
 * loop; this covers what runs in between. Cheap when nothing is held. */
void agent_quiesce_poll(agent_quiesce_t *q);
/* The round whose hold is on now, 0 when none (for the producer's logs). */
uint64_t agent_quiesce_round(const agent_quiesce_t *q);

/* The producer's drain may have finished: go on if a quiesce or a STOP waits
 * for it. */
void agent_quiesce_check(agent_quiesce_t *q);

/* True while a request is in progress or waiting. */
bool agent_quiesce_busy(const agent_quiesce_t *q);

/* How many app tag requests ended in an app tag, and how many without (a
 * failed pre-script). Group rounds are counted in the client's stats. */
void agent_quiesce_counts(const agent_quiesce_t *q, uint64_t *tagged, uint64_t *failed);

/* Drop waiting requests, kill a running script (its process group, SIGKILL),
 * close the handles and free q from the loop. No hook is called any more. */
void agent_quiesce_close(agent_quiesce_t *q);

#endif
