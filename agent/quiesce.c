/*
 * The quiesce sequence of an app tag (quiesce.h says what and why), as a
 * small state machine advanced by q_step():
 *
 *   IDLE --request--> PRE (script running) --ok--> DRAIN --drained--> POST
 *     ^                 |                                              |
 *     |                 +--failed: no tag----------------------------> POST
 *     +------------------------- release <-- (post-script done) -------+
 *
 * Without a pre-script PRE is skipped; without a post-script POST is. A
 * STOP goes IDLE -> DRAIN -> (final tag) -> IDLE: no script, no hold, no
 * release (its producer refuses writes instead of holding them). A group
 * round goes PRE -> DRAIN -> (PREPARED) DECIDE -> (COMMIT: tag) POST, and
 * leaves DRAIN or DECIDE for POST without a tag on ABORT, at the hold
 * limit (a deadline: q_deadline_check) or when its session ends; it never
 * waits in the queue (refused when something else is running). Hooks may
 * call back into agent_quiesce_check() (the producer's release admits
 * writes, which appends, which checks): q_step() notices and loops instead
 * of recursing.
 */
#include "agent/quiesce.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

extern char **environ;

typedef enum { Q_IDLE, Q_PRE, Q_DRAIN, Q_DECIDE, Q_POST, Q_CLOSED } q_state_t;

typedef enum {
    RQ_APP,   /* an app tag */
    RQ_STOP,  /* a STOP's final tag */
    RQ_ROUND, /* a group round: id is the round */
} q_what_t;

typedef struct q_req {
    uint64_t id;
    char name[WIRE_MAX_NAME + 1];
    q_what_t what;
    uint8_t round_kind;  /* rounds: WIRE_TAG_CRASH or WIRE_TAG_APP */
    uint32_t hold_ms;    /* rounds: the hold limit */
} q_req_t;

struct agent_quiesce {
    uv_loop_t *loop;
    agent_stream_t *stream;
    agent_client_t *client;
    agent_quiesce_hooks_t hooks;
    void *arg;
    char *pre, *post;
    unsigned timeout_ms;

    q_state_t state;
    q_req_t cur;
    bool holding;        /* hold() was called for cur */
    bool pre_failed;     /* cur gets no tag */
    q_req_t queue[AGENT_TAG_QUEUE_MAX];
    unsigned qhead, qlen;

    /* the running script, if any; each spawn has its own handle, freed in
     * its close callback (the next script may start before that runs) */
    uv_process_t *proc;
    bool proc_running;   /* spawned, exit not seen yet */
    bool proc_done;      /* its exit came: result below */
    int64_t exit_status;
    int term_signal;
    bool timed_out;
    uv_timer_t timer;

    bool stepping, again;
    unsigned open_handles;
    uint64_t tagged, failed;

    /* the group round in cur (cur.what == RQ_ROUND) */
    bool round_over;         /* decided here: no tag (abort, hold limit, session, failure) or tagged */
    agent_round_outcome_t outcome;
    uint64_t hold_start_ns;  /* uv_hrtime() at the hold; 0 while not held */
    uint64_t hold_limit_ns;    /* hold_start_ns + the hold limit */
    uint64_t hold_deadline_ns; /* when the agent acts on it: the limit less its margin (wire.h) */
    uint64_t late_ns;        /* timed out: how long after the limit itself the agent got to act on it */
    uint64_t expired_ns;     /* timed out: when it acted (the release's moment, for hold and late alike) */
    /* The hold limit. The timer alone is not enough: it fires at the start
     * of a loop iteration, and an iteration may be long (a busy producer,
     * other agents on the same loop), so the deadline is also checked on
     * either side of every poll of the loop while held (hold_prep,
     * hold_check) and whenever anything comes in (q_deadline_check). */
    uv_timer_t hold_timer;
    uv_prepare_t hold_prep;
    uv_check_t hold_check;
    /* the last round that ended, to say why a late COMMIT is ignored */
    uint64_t last_round;
    agent_round_outcome_t last_outcome;
    uint64_t releasing;      /* the round whose writes the release hook lets go, during the call */
};

static void q_step(agent_quiesce_t *q);
static void q_on_closed(uv_handle_t *h);

/* What the current request is called in the log (agents on several
 * threads share no buffer). */
typedef struct q_lbl {
    char s[WIRE_MAX_NAME + 64];
} q_lbl_t;

static const char *q_label(const agent_quiesce_t *q, q_lbl_t *l)
{
    if (q->cur.what == RQ_ROUND)
        snprintf(l->s, sizeof l->s, "group round %" PRIu64 " (tag '%s')", q->cur.id, q->cur.name);
    else
        snprintf(l->s, sizeof l->s, "tag '%s' (id %" PRIu64 ")", q->cur.name, q->cur.id);
    return l->s;
}

static char *q_strdup_or_null(const char *s)
{
    return s && *s ? tm_strdup(s) : NULL;
}

int agent_quiesce_new(uv_loop_t *loop, const agent_quiesce_opts_t *o, agent_stream_t *s,
                      const agent_quiesce_hooks_t *hooks, void *arg, agent_quiesce_t **out)
{
    agent_quiesce_t *q = tm_calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->loop = loop;
    q->stream = s;
    q->hooks = *hooks;
    q->arg = arg;
    q->pre = q_strdup_or_null(o->pre_script);
    q->post = q_strdup_or_null(o->post_script);
    if ((o->pre_script && *o->pre_script && !q->pre) || (o->post_script && *o->post_script && !q->post)) {
        tm_free(q->pre);
        tm_free(q->post);
        tm_free(q);
        return -ENOMEM;
    }
    q->timeout_ms = o->timeout_ms ? o->timeout_ms : AGENT_SCRIPT_TIMEOUT_MS;
    uv_timer_init(loop, &q->timer);
    uv_timer_init(loop, &q->hold_timer);
    uv_prepare_init(loop, &q->hold_prep);
    uv_check_init(loop, &q->hold_check);
    q->timer.data = q->hold_timer.data = q;
    q->hold_prep.data = q->hold_check.data = q;
    q->open_handles = 4;
    q->state = Q_IDLE;
    *out = q;
    return 0;
}

void agent_quiesce_set_client(agent_quiesce_t *q, agent_client_t *c)
{
    q->client = c;
}

bool agent_quiesce_busy(const agent_quiesce_t *q)
{
    return q->state != Q_IDLE && q->state != Q_CLOSED ? true : q->qlen > 0;
}

void agent_quiesce_counts(const agent_quiesce_t *q, uint64_t *tagged, uint64_t *failed)
{
    *tagged = q->tagged;
    *failed = q->failed;
}

/* ---- scripts ---------------------------------------------------------------- */

/* A process handle is closed and freed; q goes once nothing is left. */
static void q_proc_close(agent_quiesce_t *q, uv_process_t *p)
{
    if (q->proc == p)
        q->proc = NULL;
    q->open_handles++;
    uv_close((uv_handle_t *)p, q_on_closed);
}

static void q_on_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    agent_quiesce_t *q = p->data;
    q->proc_running = false;
    q->proc_done = true;
    q->exit_status = exit_status;
    q->term_signal = term_signal;
    uv_timer_stop(&q->timer);
    q_proc_close(q, p);
    q_step(q);
}

static void q_on_timeout(uv_timer_t *t)
{
    agent_quiesce_t *q = t->data;
    if (!q->proc_running)
        return;
    q->timed_out = true;
    q_lbl_t l;
    tm_error("%s: the %s-script is still running after %.1f s, its time limit; killing it", q_label(q, &l),
             q->state == Q_PRE ? "pre" : "post", q->timeout_ms / 1000.0);
    /* The whole group: `sh -c` may have children of its own (a sleep, a
     * database client) that would otherwise live on. */
    if (kill(-q->proc->pid, SIGKILL) != 0)
        uv_process_kill(q->proc, SIGKILL);
}

/* One environment entry "KEY=VALUE", allocated. */
static char *q_env(const char *key, const char *value)
{
    size_t n = strlen(key) + strlen(value) + 2;
    char *s = tm_malloc(n);
    if (s)
        snprintf(s, n, "%s=%s", key, value);
    return s;
}

/* Start script for phase "pre" or "post": 0, or an error (nothing runs). */
static int q_spawn(agent_quiesce_t *q, const char *script, const char *phase)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = tm_calloc(n + 4, sizeof *env);
    if (!env)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "TIDEMARK_TAG_", 13) != 0)
            env[k++] = environ[i];
    char id[32];
    snprintf(id, sizeof id, "%" PRIu64, q->cur.id);
    char *own[3] = {q_env("TIDEMARK_TAG_NAME", q->cur.name), q_env("TIDEMARK_TAG_ID", id),
                    q_env("TIDEMARK_TAG_PHASE", phase)};
    int rc = own[0] && own[1] && own[2] ? 0 : -ENOMEM;
    if (rc == 0) {
        for (unsigned i = 0; i < 3; i++)
            env[k++] = own[i];
        env[k] = NULL;
        char *args[] = {"/bin/sh", "-c", (char *)script, NULL};
        uv_stdio_container_t stdio[3] = {
            {.flags = UV_IGNORE},
            {.flags = UV_INHERIT_FD, .data.fd = 2},
            {.flags = UV_INHERIT_FD, .data.fd = 2},
        };
        uv_process_options_t po = {
            .exit_cb = q_on_exit,
            .file = "/bin/sh",
            .args = args,
            .env = env,
            .stdio_count = 3,
            .stdio = stdio,
            /* its own process group, so a timeout kills what it started */
            .flags = UV_PROCESS_DETACHED,
        };
        q->proc_done = q->timed_out = false;
        q->exit_status = 0;
        q->term_signal = 0;
        uv_process_t *p = tm_calloc(1, sizeof *p);
        rc = p ? 0 : -ENOMEM;
        if (p) {
            p->data = q;
            q->proc = p;
            rc = uv_spawn(q->loop, p, &po);
        }
        if (rc == 0) {
            q->proc_running = true;
            uv_timer_start(&q->timer, q_on_timeout, q->timeout_ms, 0);
        } else if (p) {
            /* libuv wants even a failed spawn's handle closed */
            q_proc_close(q, p);
        }
    }
    for (unsigned i = 0; i < 3; i++)
        tm_free(own[i]);
    tm_free(env);
    return rc;
}

/* How the script ended, for a log line; true when it succeeded. */
static bool q_script_result(const agent_quiesce_t *q, char *buf, size_t len)
{
    if (q->timed_out)
        snprintf(buf, len, "timed out after %.1f s and was killed", q->timeout_ms / 1000.0);
    else if (q->term_signal)
        snprintf(buf, len, "was killed by signal %d", q->term_signal);
    else if (q->exit_status == 127)
        snprintf(buf, len, "exited with status 127 (command not found?)");
    else
        snprintf(buf, len, "exited with status %" PRId64, q->exit_status);
    return !q->timed_out && !q->term_signal && q->exit_status == 0;
}

/* Run phase's script if there is one: true when it was started (wait for
 * its exit); false when there is none or it could not start (*failed). */
static bool q_run(agent_quiesce_t *q, const char *script, const char *phase, bool *failed)
{
    *failed = false;
    if (!script)
        return false;
    int rc = q_spawn(q, script, phase);
    q_lbl_t l;
    if (rc == 0) {
        tm_info("%s: running the %s-script", q_label(q, &l), phase);
        return true;
    }
    tm_error("%s: cannot start the %s-script: %s", q_label(q, &l), phase, tm_strerror(rc));
    *failed = true;
    return false;
}

/* ---- the sequence ---------------------------------------------------------- */

static void q_kick(agent_quiesce_t *q)
{
    if (q->client)
        agent_client_kick(q->client);
}

static const char *q_outcome_name(agent_round_outcome_t o)
{
    switch (o) {
    case AGENT_ROUND_COMMITTED: return "committed";
    case AGENT_ROUND_ABORTED: return "aborted";
    case AGENT_ROUND_TIMED_OUT: return "timed out";
    case AGENT_ROUND_FAILED: return "failed";
    }
    return "ended";
}

/* A round's end: its record goes to the client's stats, from the hold's
 * start to now (the release): the time the writes really were held, however
 * late the loop let this agent act. A round that timed out also says how
 * long after its limit the writes went (late_us); more than the slack is
 * logged as what it is. */
static void q_round_note(agent_quiesce_t *q, uint64_t round, uint8_t kind, agent_round_outcome_t outcome,
                         uint64_t hold_start_ns)
{
    agent_round_rec_t r = {.round = round, .kind = kind, .outcome = (uint8_t)outcome};
    if (hold_start_ns) {
        /* a timed-out crash round: measured at the moment the agent acted
         * (and released), as its lateness is, not after the release's own
         * work; an app round holds on through its post-script */
        uint64_t now = outcome == AGENT_ROUND_TIMED_OUT && kind == WIRE_TAG_CRASH && q->expired_ns
                           ? q->expired_ns
                           : uv_hrtime();
        r.hold_us = (now - hold_start_ns) / 1000u;
        r.released_ns = now;
        /* An app round's post-script runs with the writes held, after the
         * limit too, by design (its own time limit): late is only how long
         * the agent took to act on the limit. */
        if (outcome == AGENT_ROUND_TIMED_OUT)
            r.late_us = q->late_ns / 1000u;
        if (r.late_us > 0)
            tm_warn("group round %" PRIu64 ": writes held %.3f ms; the hold limit of %u ms was acted on %.3f ms "
                    "after it passed: the agent's loop did not run it in time (blocked or overloaded)",
                    round, r.hold_us / 1000.0, q->cur.hold_ms, r.late_us / 1000.0);
    }
    q->last_round = round;
    q->last_outcome = outcome;
    if (q->client)
        agent_client_note_round(q->client, &r);
    tm_debug("group round %" PRIu64 ": %s; writes held %.3f ms", round, q_outcome_name(outcome), r.hold_us / 1000.0);
}

static void q_hold_watch_stop(agent_quiesce_t *q)
{
    uv_timer_stop(&q->hold_timer);
    uv_prepare_stop(&q->hold_prep);
    uv_check_stop(&q->hold_check);
}

static void q_finish(agent_quiesce_t *q)
{
    if (q->cur.what == RQ_ROUND) {
        q_hold_watch_stop(q);
        q_round_note(q, q->cur.id, q->cur.round_kind, q->outcome, q->hold_start_ns);
        q->hold_start_ns = 0;
        q->hold_deadline_ns = q->hold_limit_ns = 0;
    } else if (q->pre_failed) {
        q->failed++;
        tm_error("tag '%s' (id %" PRIu64 "): no app tag: the pre-script failed (see above); writes went on "
                 "untouched", q->cur.name, q->cur.id);
    } else {
        q->tagged++;
    }
    q->state = Q_IDLE;
    q->holding = false;
    /* agent_quiesce_round() still names the round while its writes go */
    q->releasing = q->cur.what == RQ_ROUND ? q->cur.id : 0;
    if (q->hooks.release)
        q->hooks.release(q->arg);
    q->releasing = 0;
}

/* Enter POST: run the post-script (app tags and app rounds), or finish at
 * once without one. */
static void q_post(agent_quiesce_t *q)
{
    bool failed;
    q->state = Q_POST;
    if (q->cur.what == RQ_ROUND && q->cur.round_kind != WIRE_TAG_APP) {
        q_finish(q);
        return;
    }
    if (!q_run(q, q->post, "post", &failed))
        q_finish(q);
}

static void q_on_hold_limit(uv_timer_t *t);
static void q_on_hold_prep(uv_prepare_t *h);
static void q_on_hold_check(uv_check_t *h);

static void q_hold(agent_quiesce_t *q)
{
    q->state = Q_DRAIN;
    q->holding = true;
    if (q->cur.what == RQ_ROUND) {
        /* The clock starts with the hold: the drain counts against it. */
        q->hold_start_ns = uv_hrtime();
        q->late_ns = q->expired_ns = 0;
        q->hold_limit_ns = q->hold_start_ns + (uint64_t)q->cur.hold_ms * 1000000u;
        q->hold_deadline_ns = q->hold_limit_ns - WIRE_GROUP_HOLD_MARGIN_US(q->cur.hold_ms) * 1000u;
        /* The loop's idea of now may be behind (it is taken once per
         * iteration): the timer may fire early, and then waits the rest
         * (q_on_hold_limit). */
        uv_timer_start(&q->hold_timer, q_on_hold_limit, q->cur.hold_ms, 0);
        uv_prepare_start(&q->hold_prep, q_on_hold_prep);
        uv_check_start(&q->hold_check, q_on_hold_check);
        tm_debug("group round %" PRIu64 ": holding new writes (at most %u ms without a decision)", q->cur.id,
                 q->cur.hold_ms);
    } else {
        tm_info("tag '%s' (id %" PRIu64 "): holding new writes until the tag is in the stream", q->cur.name,
                q->cur.id);
    }
    if (q->hooks.hold)
        q->hooks.hold(q->arg);
}

/* ---- group rounds ------------------------------------------------------------------ */

/* PREPARED for round on the live session: 0 or why not. */
static int q_send_prepared(agent_quiesce_t *q, uint64_t round, bool held, uint64_t seq, const char *why)
{
    wire_prepared_t p = {.round = round, .status = held ? WIRE_PREPARED_HELD : WIRE_PREPARED_FAILED,
                         .seq = held ? seq : 0};
    if (!held)
        snprintf(p.reason, sizeof p.reason, "%s", why && *why ? why : "failed");
    return q->client ? agent_client_prepared(q->client, &p) : TM_ECLOSED;
}

/* A round that cannot start: PREPARED failed, nothing held. */
static void q_round_refuse(agent_quiesce_t *q, const wire_group_prepare_t *m, const char *why)
{
    tm_warn("group round %" PRIu64 ": refused: %s", m->round, why);
    int rc = q_send_prepared(q, m->round, false, 0, why);
    if (rc != 0)
        tm_debug("group round %" PRIu64 ": cannot answer: %s", m->round, tm_strerror(rc));
    q_round_note(q, m->round, m->kind, AGENT_ROUND_FAILED, 0);
}

/* The open round ends here without a tag (outcome says why): the writes go
 * once the post-script (app rounds) has run. From PRE, the pre-script's
 * exit moves on (q_advance). */
static void q_round_drop(agent_quiesce_t *q, agent_round_outcome_t outcome)
{
    q->round_over = true;
    q->outcome = outcome;
    q_hold_watch_stop(q);
    if (q->state == Q_DRAIN || q->state == Q_DECIDE) {
        q_post(q);
        q_step(q);
    }
}

/* The round in cur is open (not decided yet) and its id is round. */
static bool q_round_open(const agent_quiesce_t *q, uint64_t round)
{
    return q->cur.what == RQ_ROUND && q->cur.id == round && !q->round_over &&
           (q->state == Q_PRE || q->state == Q_DRAIN || q->state == Q_DECIDE);
}

/* The open round is held (its clock runs). */
static bool q_round_held(const agent_quiesce_t *q)
{
    return q->cur.what == RQ_ROUND && !q->round_over && q->hold_deadline_ns &&
           (q->state == Q_DRAIN || q->state == Q_DECIDE);
}

/* The hold limit has passed: the round ends here without a tag. */
static void q_expire(agent_quiesce_t *q)
{
    char why[WIRE_MAX_TEXT + 1];
    uint64_t now = uv_hrtime();
    q->late_ns = now > q->hold_limit_ns ? now - q->hold_limit_ns : 0;
    q->expired_ns = now;
    if (q->state == Q_DRAIN) {
        /* Not prepared yet: say so, the coordinator need not wait. */
        snprintf(why, sizeof why,
                 "the writes accepted before the hold were not all in the stream within the hold limit of %u ms",
                 q->cur.hold_ms);
        q_send_prepared(q, q->cur.id, false, 0, why);
    } else {
        snprintf(why, sizeof why, "no decision within the hold limit of %u ms", q->cur.hold_ms);
    }
    tm_warn("group round %" PRIu64 ": %s; releasing the writes without a tag", q->cur.id, why);
    q_round_drop(q, AGENT_ROUND_TIMED_OUT);
}

/* True when the open round's hold limit has passed: it ends now, before
 * whatever came in is handled (a COMMIT is then too late, a write goes on).
 * Not from inside q_step (a hook calling back): the step's caller checks. */
static bool q_deadline_check(agent_quiesce_t *q)
{
    if (q->stepping || !q_round_held(q) || uv_hrtime() < q->hold_deadline_ns)
        return false;
    q_expire(q);
    return true;
}

static void q_on_hold_limit(uv_timer_t *t)
{
    agent_quiesce_t *q = t->data;
    if (!q_round_held(q))
        return;
    uint64_t now = uv_hrtime();
    if (now < q->hold_deadline_ns) {
        /* early by the loop's stale clock: wait the rest */
        uint64_t left_ms = (q->hold_deadline_ns - now + 999999u) / 1000000u;
        uv_timer_start(&q->hold_timer, q_on_hold_limit, left_ms, 0);
        return;
    }
    q_deadline_check(q);
}

static void q_on_hold_prep(uv_prepare_t *h)
{
    q_deadline_check(h->data);
}

static void q_on_hold_check(uv_check_t *h)
{
    q_deadline_check(h->data);
}

void agent_quiesce_poll(agent_quiesce_t *q)
{
    if (q->state != Q_CLOSED)
        q_deadline_check(q);
}

void agent_quiesce_group_prepare(agent_quiesce_t *q, const wire_group_prepare_t *m)
{
    char why[WIRE_MAX_TEXT + 1];
    if (q->state == Q_CLOSED)
        return;
    q_deadline_check(q);
    /* One thing at a time: a round must be quick, so it does not wait in
     * the queue behind an app tag's scripts; the coordinator asks again. */
    if (q->state != Q_IDLE || q->qlen) {
        if (q->cur.what == RQ_ROUND)
            snprintf(why, sizeof why, "group round %" PRIu64 " is still open here", q->cur.id);
        else if (q->cur.what == RQ_STOP)
            snprintf(why, sizeof why, "busy: the final tag '%s' of a STOP is being taken", q->cur.name);
        else
            snprintf(why, sizeof why, "busy: app tag '%s' is being taken", q->cur.name);
        q_round_refuse(q, m, why);
        return;
    }
    if (q->hooks.round_refused && q->hooks.round_refused(q->arg, why, sizeof why)) {
        q_round_refuse(q, m, why);
        return;
    }
    memset(&q->cur, 0, sizeof q->cur);
    q->cur.what = RQ_ROUND;
    q->cur.id = m->round;
    q->cur.round_kind = m->kind;
    q->cur.hold_ms = m->hold_ms;
    snprintf(q->cur.name, sizeof q->cur.name, "%s", m->name);
    q->round_over = false;
    q->outcome = AGENT_ROUND_ABORTED;
    q->hold_start_ns = 0;
    q->pre_failed = false;
    q->holding = false;
    q->state = Q_PRE;
    tm_debug("group round %" PRIu64 " (%s, tag '%s'): preparing", m->round, m->kind == WIRE_TAG_APP ? "app" : "crash",
             m->name);
    bool failed = false;
    if (m->kind == WIRE_TAG_APP && q_run(q, q->pre, "pre", &failed))
        return; /* q_advance goes on at its exit */
    if (failed) {
        snprintf(why, sizeof why, "cannot start the pre-script");
        q_send_prepared(q, m->round, false, 0, why);
        q->round_over = true;
        q->outcome = AGENT_ROUND_FAILED;
        q->pre_failed = true;
        q_post(q);
    } else {
        q_hold(q);
    }
    q_step(q);
}

void agent_quiesce_group_commit(agent_quiesce_t *q, uint64_t round)
{
    if (q->state == Q_CLOSED)
        return;
    /* A COMMIT read after the hold limit (the timer not run yet: the loop
     * was busy) is too late: the writes go without the tag. */
    q_deadline_check(q);
    if (q_round_open(q, round) && q->state == Q_DECIDE) {
        q_hold_watch_stop(q);
        uint64_t seq = 0;
        int rc = agent_stream_tag(q->stream, WIRE_TAG_GROUP, round, q->cur.name, true, &seq);
        q->round_over = true;
        if (rc == 0) {
            q->outcome = AGENT_ROUND_COMMITTED;
            tm_info("group round %" PRIu64 ": group tag '%s' added to the stream at sequence %" PRIu64
                    " (writes held %.3f ms)",
                    round, q->cur.name, seq, (uv_hrtime() - q->hold_start_ns) / 1e6);
            q_kick(q);
        } else {
            /* The name was checked on receipt: only memory can fail here. */
            q->outcome = AGENT_ROUND_ABORTED;
            tm_error("group round %" PRIu64 ": cannot add the group tag to the stream: %s; releasing without it",
                     round, tm_strerror(rc));
        }
        q_post(q);
        q_step(q);
        return;
    }
    if (q_round_open(q, round)) {
        /* The appliance decided before it heard this agent: not a
         * decision to follow, the tag's position was never reported. */
        tm_error("group round %" PRIu64 ": COMMIT before this agent answered PREPARED; ending the round here "
                 "without a tag", round);
        q_round_drop(q, AGENT_ROUND_ABORTED);
        return;
    }
    if (round == q->last_round)
        tm_warn("group round %" PRIu64 ": COMMIT ignored: the round had %s here", round,
                q_outcome_name(q->last_outcome));
    else
        tm_warn("group round %" PRIu64 ": COMMIT ignored: no such round is open here", round);
}

void agent_quiesce_group_abort(agent_quiesce_t *q, uint64_t round)
{
    if (q->state == Q_CLOSED)
        return;
    q_deadline_check(q);
    if (!q_round_open(q, round)) {
        tm_debug("group round %" PRIu64 ": ABORT of a round not open here: nothing to do", round);
        return;
    }
    tm_info("group round %" PRIu64 ": aborted by the appliance; releasing the writes without a tag", round);
    q_round_drop(q, AGENT_ROUND_ABORTED);
}

void agent_quiesce_session_lost(agent_quiesce_t *q)
{
    if (q->state == Q_CLOSED)
        return;
    q_deadline_check(q);
    if (q->cur.what != RQ_ROUND || !q_round_open(q, q->cur.id))
        return;
    tm_warn("group round %" PRIu64 ": the session with the appliance ended; releasing the writes without a tag",
            q->cur.id);
    q_round_drop(q, AGENT_ROUND_ABORTED);
}

uint64_t agent_quiesce_round(const agent_quiesce_t *q)
{
    if (q->releasing)
        return q->releasing;
    return q->cur.what == RQ_ROUND && q->holding && q->state != Q_IDLE && q->state != Q_CLOSED ? q->cur.id : 0;
}

/* A STOP's drain is done: every write accepted before it is in the stream. */
static void q_final_tag(agent_quiesce_t *q)
{
    uint64_t seq = 0;
    int rc = agent_stream_tag(q->stream, WIRE_TAG_CRASH, q->cur.id, q->cur.name, true, &seq);
    if (rc != 0) {
        /* The name was checked on receipt: only memory can fail here. */
        tm_error("final tag '%s' (id %" PRIu64 "): cannot add it to the stream: %s", q->cur.name, q->cur.id,
                 tm_strerror(rc));
        return;
    }
    tm_info("final tag '%s' (id %" PRIu64 ") added to the stream at sequence %" PRIu64
            ": it follows every write accepted before the STOP",
            q->cur.name, q->cur.id, seq);
    q_kick(q);
}

static void q_advance(agent_quiesce_t *q)
{
    char why[128];
    bool failed;
    switch (q->state) {
    case Q_IDLE:
        if (!q->qlen)
            return;
        q->cur = q->queue[q->qhead];
        q->qhead = (q->qhead + 1) % AGENT_TAG_QUEUE_MAX;
        q->qlen--;
        q->pre_failed = false;
        q->holding = false;
        if (q->cur.what == RQ_STOP) {
            tm_info("final tag '%s' (id %" PRIu64 "): waiting until every write accepted before the STOP is in "
                    "the stream", q->cur.name, q->cur.id);
            q->state = Q_DRAIN;
            q->again = true;
            return;
        }
        tm_info("tag '%s' (id %" PRIu64 "): the appliance asks for an app-consistent tag", q->cur.name,
                q->cur.id);
        q->state = Q_PRE;
        if (q_run(q, q->pre, "pre", &failed))
            return;
        if (failed) {
            q->pre_failed = true;
            q_post(q);
        } else {
            q_hold(q);
        }
        q->again = true;
        return;
    case Q_PRE:
        if (!q->proc_done)
            return;
        q->proc_done = false;
        if (q->cur.what == RQ_ROUND) {
            bool ok = q_script_result(q, why, sizeof why);
            if (q->round_over) {
                /* aborted while the script ran: thaw, hold nothing */
                tm_info("group round %" PRIu64 ": the pre-script %s; the round is over (%s): running the "
                        "post-script, holding nothing", q->cur.id, why, q_outcome_name(q->outcome));
                q_post(q);
            } else if (ok) {
                q_hold(q);
            } else {
                char reason[WIRE_MAX_TEXT + 1];
                snprintf(reason, sizeof reason, "the pre-script %s", why);
                tm_error("group round %" PRIu64 ": %s; running the post-script to undo it, holding nothing",
                         q->cur.id, reason);
                q_send_prepared(q, q->cur.id, false, 0, reason);
                q->round_over = true;
                q->outcome = AGENT_ROUND_FAILED;
                q_post(q);
            }
            q->again = true;
            return;
        }
        if (q_script_result(q, why, sizeof why)) {
            tm_info("tag '%s' (id %" PRIu64 "): the pre-script succeeded", q->cur.name, q->cur.id);
            q_hold(q);
        } else {
            tm_error("tag '%s' (id %" PRIu64 "): the pre-script %s; running the post-script to undo it, "
                     "appending no app tag", q->cur.name, q->cur.id, why);
            q->pre_failed = true;
            q_post(q);
        }
        q->again = true;
        return;
    case Q_DRAIN:
        if (q->cur.what == RQ_ROUND) {
            if (q->hooks.drained && !q->hooks.drained(q->arg))
                return;
            if (uv_hrtime() >= q->hold_deadline_ns) {
                /* drained, but too late: PREPARED would promise a hold
                 * that is over */
                q_expire(q);
                q->again = true;
                return;
            }
            /* Every write accepted before the hold is in the stream, and
             * none after it can be: the group tag will follow this. */
            uint64_t seq = q->stream->next_seq - 1;
            int rc = q_send_prepared(q, q->cur.id, true, seq, NULL);
            if (rc != 0) {
                tm_warn("group round %" PRIu64 ": cannot answer PREPARED (%s); releasing the writes without a tag",
                        q->cur.id, tm_strerror(rc));
                q->round_over = true;
                q->outcome = AGENT_ROUND_ABORTED;
                q_hold_watch_stop(q);
                q_post(q);
            } else {
                tm_debug("group round %" PRIu64 ": held at sequence %" PRIu64 "; PREPARED sent", q->cur.id, seq);
                q->state = Q_DECIDE;
            }
            q->again = true;
            return;
        }
        if (q->cur.what == RQ_STOP) {
            bool (*done)(void *) = q->hooks.final_drained ? q->hooks.final_drained : q->hooks.drained;
            if (done && !done(q->arg))
                return;
            q_final_tag(q);
            q->state = Q_IDLE;
            q->again = true;
            return;
        }
        if (q->hooks.drained && !q->hooks.drained(q->arg))
            return;
        {
            uint64_t seq = 0;
            int rc = agent_stream_tag(q->stream, WIRE_TAG_APP, q->cur.id, q->cur.name, true, &seq);
            if (rc != 0) {
                /* Only a name the wire cannot carry (checked on receipt) or
                 * no memory: say so, thaw, go on. */
                tm_error("tag '%s' (id %" PRIu64 "): cannot add the app tag to the stream: %s", q->cur.name,
                         q->cur.id, tm_strerror(rc));
                q->pre_failed = true;
            } else {
                tm_info("tag '%s' (id %" PRIu64 "): app tag added to the stream", q->cur.name, q->cur.id);
                q_kick(q);
            }
        }
        q_post(q);
        q->again = true;
        return;
    case Q_DECIDE:
        return; /* COMMIT, ABORT, the hold limit or the session's end moves on */
    case Q_POST:
        if (!q->proc_done)
            return;
        q->proc_done = false;
        if (q->cur.what == RQ_ROUND && q_script_result(q, why, sizeof why))
            tm_info("group round %" PRIu64 " (tag '%s'): the post-script succeeded", q->cur.id, q->cur.name);
        else if (q->cur.what == RQ_ROUND)
            tm_error("group round %" PRIu64 " (tag '%s'): the post-script %s", q->cur.id, q->cur.name, why);
        else if (q_script_result(q, why, sizeof why))
            tm_info("tag '%s' (id %" PRIu64 "): the post-script succeeded", q->cur.name, q->cur.id);
        else
            tm_error("tag '%s' (id %" PRIu64 "): the post-script %s", q->cur.name, q->cur.id, why);
        q_finish(q);
        q->again = true;
        return;
    case Q_CLOSED:
        return;
    }
}

static void q_step(agent_quiesce_t *q)
{
    if (q->stepping) {
        q->again = true;
        return;
    }
    q->stepping = true;
    do {
        q->again = false;
        q_advance(q);
    } while (q->again && q->state != Q_CLOSED);
    q->stepping = false;
}

/* Queue a request; false (logged) when the queue is full. */
static bool q_enqueue(agent_quiesce_t *q, uint64_t id, const char *name, bool stop)
{
    char busy[WIRE_MAX_NAME + 64];
    if (q->cur.what == RQ_ROUND)
        snprintf(busy, sizeof busy, "group round %" PRIu64, q->cur.id);
    else
        snprintf(busy, sizeof busy, "tag '%s'", q->cur.name);
    if (q->qlen == AGENT_TAG_QUEUE_MAX) {
        tm_error("%s '%s' (id %" PRIu64 "): refused: %u requests are already waiting", stop ? "final tag" : "tag",
                 name, id, AGENT_TAG_QUEUE_MAX);
        return false;
    }
    q_req_t *r = &q->queue[(q->qhead + q->qlen) % AGENT_TAG_QUEUE_MAX];
    memset(r, 0, sizeof *r);
    r->id = id;
    r->what = stop ? RQ_STOP : RQ_APP;
    snprintf(r->name, sizeof r->name, "%s", name);
    q->qlen++;
    if (q->state != Q_IDLE)
        tm_info("%s '%s' (id %" PRIu64 "): waits until %s is done", stop ? "final tag" : "tag", name, id, busy);
    return true;
}

void agent_quiesce_stop(agent_quiesce_t *q, uint64_t id, const char *name)
{
    if (q->state == Q_CLOSED)
        return;
    q_deadline_check(q);
    if (q_enqueue(q, id, name, true))
        q_step(q);
}

void agent_quiesce_resume(agent_quiesce_t *q)
{
    if (q->state == Q_CLOSED)
        return;
    /* Waiting STOPs go; app tag requests keep their order. */
    unsigned kept = 0;
    for (unsigned i = 0; i < q->qlen; i++) {
        q_req_t r = q->queue[(q->qhead + i) % AGENT_TAG_QUEUE_MAX];
        if (r.what == RQ_STOP) {
            tm_info("final tag '%s' (id %" PRIu64 "): dropped: replication resumed before it was taken", r.name,
                    r.id);
            continue;
        }
        q->queue[(q->qhead + kept++) % AGENT_TAG_QUEUE_MAX] = r;
    }
    q->qlen = kept;
    if (q->state == Q_DRAIN && q->cur.what == RQ_STOP) {
        /* The writes it waits for may never drain now that new ones come. */
        tm_info("final tag '%s' (id %" PRIu64 "): dropped: replication resumed before every write accepted "
                "before the STOP was in the stream", q->cur.name, q->cur.id);
        q->state = Q_IDLE;
        q_step(q);
    }
}

void agent_quiesce_check(agent_quiesce_t *q)
{
    if (q->state == Q_CLOSED || q_deadline_check(q))
        return;
    if (q->state == Q_DRAIN)
        q_step(q);
}

void agent_quiesce_request(agent_quiesce_t *q, uint8_t kind, uint64_t id, const char *name)
{
    if (q->state == Q_CLOSED)
        return;
    q_deadline_check(q);
    if (kind != WIRE_TAG_APP) {
        /* Every position of the stream is crash-consistent already: a crash
         * tag needs no quiesce, and it does not wait for an app tag's. */
        int rc = agent_stream_tag(q->stream, kind, id, name, true, NULL);
        if (rc != 0)
            tm_warn("cannot add tag '%s' (id %" PRIu64 ") asked for by the server: %s", name, id,
                    tm_strerror(rc));
        else
            tm_info("tag '%s' (id %" PRIu64 ") added to the stream at the server's request", name, id);
        q_kick(q);
        return;
    }
    if (q_enqueue(q, id, name, false))
        q_step(q);
}

/* ---- closing -------------------------------------------------------------------- */

static void q_free(agent_quiesce_t *q)
{
    tm_free(q->pre);
    tm_free(q->post);
    tm_free(q);
}

static void q_on_closed(uv_handle_t *h)
{
    agent_quiesce_t *q = h->data;
    if (h->type == UV_PROCESS)
        tm_free(h);
    if (--q->open_handles == 0)
        q_free(q);
}

void agent_quiesce_close(agent_quiesce_t *q)
{
    if (q->state == Q_CLOSED)
        return;
    if (q->qlen)
        tm_warn("%u app tag request(s) dropped: the agent is ending", q->qlen);
    q->qlen = 0;
    if (q->cur.what == RQ_ROUND && q->state != Q_IDLE)
        tm_warn("group round %" PRIu64 ": dropped: the agent is ending", q->cur.id);
    if (q->proc_running) {
        tm_warn("tag '%s' (id %" PRIu64 "): the agent is ending; killing the running script", q->cur.name,
                q->cur.id);
        if (kill(-q->proc->pid, SIGKILL) != 0)
            uv_process_kill(q->proc, SIGKILL);
        q->proc_running = false;
        q_proc_close(q, q->proc);
    }
    q->state = Q_CLOSED;
    uv_close((uv_handle_t *)&q->timer, q_on_closed);
    uv_close((uv_handle_t *)&q->hold_timer, q_on_closed);
    uv_close((uv_handle_t *)&q->hold_prep, q_on_closed);
    uv_close((uv_handle_t *)&q->hold_check, q_on_closed);
}
