/*
 * Group rounds over the agents' sessions (docs/agent-protocol.md, "Group
 * rounds"): GROUP_PREPARE to a machine's agent and its PREPARED back to the
 * caller (the consistency coordinator), then GROUP_COMMIT or GROUP_ABORT.
 *
 * Each machine has at most one round open here (ig_machine_t.grp_*). A
 * prepare's answer is owed exactly once: the agent's PREPARED, or a failure
 * ingest makes itself (the machine cannot cut a point now, its session
 * ended, the caller aborted first, the server stops). Every answer is
 * queued and delivered from a timer on the loop's next turn, never from
 * inside a call of the caller's or in the middle of a session's frame, so a
 * callback may call any ingest function.
 *
 * A round is tied to the session it was asked on: when that session ends
 * the agent releases its writes itself (its round ends with its session),
 * so an answer still owed fails ("disconnected") and a held round can no
 * longer be committed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"

/* ---- answers -------------------------------------------------------------------- */

static void ig__grp_timer_cb(uv_timer_t *h)
{
    ig_group_flush(h->data);
}

void ig_group_flush(ingest_t *ig)
{
    /* Answers queued by these callbacks wait for the next turn. */
    ig_grp_call_t *k = ig->grp_due_head;
    ig->grp_due_head = ig->grp_due_tail = NULL;
    while (k) {
        ig_grp_call_t *next = k->next;
        k->cb(k->arg, k->machine, k->round, k->status, k->seq, k->reason);
        tm_free(k);
        k = next;
    }
}

void ig_group_free(ingest_t *ig)
{
    ig_grp_call_t *k = ig->grp_due_head;
    while (k) {
        ig_grp_call_t *next = k->next;
        tm_free(k);
        k = next;
    }
    ig->grp_due_head = ig->grp_due_tail = NULL;
}

/* Queue k's answer for the next turn. */
static void ig__grp_due(ingest_t *ig, ig_grp_call_t *k, int status, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void ig__grp_due(ingest_t *ig, ig_grp_call_t *k, int status, uint64_t seq, const char *fmt, ...)
{
    k->status = status;
    k->seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->reason, sizeof k->reason, fmt, ap);
    va_end(ap);
    k->next = NULL;
    if (ig->grp_due_tail)
        ig->grp_due_tail->next = k;
    else
        ig->grp_due_head = k;
    ig->grp_due_tail = k;
    /* stopping, the timer is closed: ig_maybe_stopped delivers them last */
    if (!ig->stopping)
        uv_timer_start(&ig->grp_timer, ig__grp_timer_cb, 0, 0);
}

/* The answer m's caller waits for, with the round closed here. */
static void ig__grp_fail(ingest_t *ig, ig_machine_t *m, int status, const char *why)
{
    ig_grp_call_t *k = m->grp_call;
    m->grp_call = NULL;
    m->grp_state = IG_GRP_NONE;
    if (k)
        ig__grp_due(ig, k, status, 0, "%s", why);
}

/* ---- the session's side ------------------------------------------------------------ */

void ig_group_conn_gone(ig_machine_t *m, ig_conn_t *c)
{
    if (m->grp_state == IG_GRP_NONE || m->grp_gen != c->gen)
        return;
    if (m->grp_state == IG_GRP_PREPARING) {
        ingest_t *ig = c->ig;
        if (ig->stopping)
            ig__grp_fail(ig, m, -ECANCELED, "the server is stopping");
        else
            ig__grp_fail(ig, m, -ECONNRESET, "disconnected");
    } else if (m->grp_state == IG_GRP_HELD) {
        /* The agent ends its round with its session: nothing to commit. */
        m->grp_state = IG_GRP_LOST;
    }
}

void ig_group_retired(ig_machine_t *m)
{
    if (m->grp_state == IG_GRP_PREPARING && m->conn)
        ig__grp_fail(m->conn->ig, m, TM_EFAILED, "the machine was retired");
    m->grp_state = IG_GRP_NONE;
}

void ig_group_prepared(ig_conn_t *c)
{
    ig_machine_t *m = c->m;
    char reason[200], who[160];
    wire_prepared_t p;
    int rc = wire_dec_prepared(c->dec.body, c->dec.hdr.body_len, &p, reason, sizeof reason);
    if (rc) {
        ig_conn_fail(c, rc, "%s", reason);
        return;
    }
    if (m->grp_state != IG_GRP_PREPARING || m->grp_round != p.round || m->grp_gen != c->gen) {
        /* An answer after the caller gave up (aborted) or after a failure
         * ingest made itself: the round is over here. */
        tm_debug("ingest: %s: PREPARED for group round %" PRIu64 ", which is not waiting for it: ignored",
                 ig_conn_who(c, who, sizeof who), p.round);
        return;
    }
    ig_grp_call_t *k = m->grp_call;
    m->grp_call = NULL;
    if (p.status == WIRE_PREPARED_HELD) {
        m->grp_state = IG_GRP_HELD;
        tm_debug("ingest: %s: group round %" PRIu64 " held at sequence %" PRIu64, ig_conn_who(c, who, sizeof who),
                 p.round, p.seq);
        ig__grp_due(c->ig, k, 0, p.seq, "%s", "");
    } else {
        m->grp_state = IG_GRP_NONE;
        tm_info("ingest: %s: group round %" PRIu64 " failed at the agent: %s", ig_conn_who(c, who, sizeof who),
                p.round, p.reason);
        ig__grp_due(c->ig, k, TM_EFAILED, 0, "%s", p.reason);
    }
}

/* ---- the requests ---------------------------------------------------------------------- */

/* Why m cannot cut a consistent point now, into why; false when it can.
 * From the durable state: the agent checks what only it knows. */
static bool ig__grp_refused(const ig_machine_t *m, char *why, size_t len)
{
    if (m->stop == IG_STOP_STOPPED) {
        snprintf(why, len, "stopped");
        return true;
    }
    uint64_t all = ig_machine_all_disks(m);
    if (!all || (m->synced & all) != all) {
        unsigned d = 0;
        while (d < m->ndisks && ((m->synced >> d) & 1))
            d++;
        snprintf(why, len, "disk %s: its initial copy is not complete: no consistent point can be cut there",
                 d < m->ndisks ? m->disks[d].name : "?");
        return true;
    }
    if (m->resync) {
        unsigned d = 0;
        while (d < m->ndisks && !((m->resync >> d) & 1))
            d++;
        snprintf(why, len, "disk %s: its resync is running: no consistent point can be cut there",
                 d < m->ndisks ? m->disks[d].name : "?");
        return true;
    }
    return false;
}

int ingest_group_prepare(ingest_t *ig, const char *machine, uint64_t round, uint8_t kind, uint32_t hold_ms,
                         const char *name, ingest_prepared_cb cb, void *arg)
{
    char who[160], why[WIRE_MAX_TEXT + 1];
    if (!machine || !name || !cb || round == 0 || !wire_name_ok(name) ||
        (kind != WIRE_TAG_CRASH && kind != WIRE_TAG_APP) || hold_ms == 0 || hold_ms > WIRE_GROUP_MAX_HOLD_MS)
        return TM_EINVAL;
    if (ig->stopping)
        return TM_ECLOSED;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (rc)
        return rc;
    /* The hold's position is in the stream: only a welcomed session. */
    if (c->state != IG_ST_STREAM)
        return -ENOTCONN;
    ig_grp_call_t *k = tm_calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    k->cb = cb;
    k->arg = arg;
    k->round = round;
    snprintf(k->machine, sizeof k->machine, "%s", m->name);

    uint64_t now = tm_mono_ns();
    /* A held round past its limit is over at the agent, which released by
     * itself: a caller that never decided it does not block the next. */
    bool open = m->grp_state == IG_GRP_PREPARING || (m->grp_state == IG_GRP_HELD && now < m->grp_deadline_ns);
    if (open) {
        snprintf(why, sizeof why, "group round %" PRIu64 " is still open on this machine (%s)", m->grp_round,
                 m->grp_state == IG_GRP_PREPARING ? "its agent has not answered" : "held, neither committed nor aborted");
        ig__grp_due(ig, k, TM_EFAILED, 0, "%s", why);
        return 0;
    }
    if (ig__grp_refused(m, why, sizeof why)) {
        tm_debug("ingest: machine %s: group round %" PRIu64 " refused: %s", m->name, round, why);
        ig__grp_due(ig, k, TM_EFAILED, 0, "%s", why);
        return 0;
    }
    wire_buf_t b = {0};
    wire_group_prepare_t p = {.round = round, .kind = kind, .hold_ms = hold_ms};
    snprintf(p.name, sizeof p.name, "%s", name);
    rc = wire_enc_group_prepare(&b, &p) == 0 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = ig_send_request(c, &b, "GROUP_PREPARE");
    wire_buf_free(&b);
    if (rc) {
        tm_free(k);
        return rc;
    }
    m->grp_state = IG_GRP_PREPARING;
    m->grp_round = round;
    m->grp_gen = c->gen;
    m->grp_deadline_ns = now + (uint64_t)hold_ms * 1000000u;
    m->grp_call = k;
    tm_debug("ingest: %s: group round %" PRIu64 " (%s, tag '%s', hold at most %u ms) asked",
             ig_conn_who(c, who, sizeof who), round, kind == WIRE_TAG_APP ? "app" : "crash", name, hold_ms);
    return 0;
}

int ingest_group_commit(ingest_t *ig, const char *machine, uint64_t round)
{
    if (!machine || round == 0)
        return TM_EINVAL;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (m && m->grp_round == round && m->grp_state == IG_GRP_LOST) {
        m->grp_state = IG_GRP_NONE;
        return -ENOTCONN; /* the session that held it ended */
    }
    if (rc)
        return rc;
    if (c->state != IG_ST_STREAM || m->grp_gen != c->gen) {
        if (m->grp_round == round && m->grp_state != IG_GRP_NONE)
            return -ENOTCONN;
        return TM_EINVAL;
    }
    if (m->grp_state != IG_GRP_HELD || m->grp_round != round)
        return TM_EINVAL; /* never asked, still preparing, failed, or decided */
    wire_buf_t b = {0};
    rc = wire_enc_group_commit(&b, round) == 0 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = ig_send_request(c, &b, "GROUP_COMMIT");
    wire_buf_free(&b);
    if (rc)
        return rc; /* the session failed: the agent ends the round with it */
    m->grp_state = IG_GRP_NONE;
    return 0;
}

int ingest_group_abort(ingest_t *ig, const char *machine, uint64_t round)
{
    if (!machine || round == 0)
        return TM_EINVAL;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (!m)
        return rc;
    if (m->grp_round != round || m->grp_state == IG_GRP_NONE)
        return rc; /* nothing of this round here: nothing to undo */
    bool preparing = m->grp_state == IG_GRP_PREPARING, lost = m->grp_state == IG_GRP_LOST;
    if (preparing) /* owed once: the caller gave up, a late PREPARED is ignored */
        ig__grp_fail(ig, m, -ECANCELED, "aborted before the agent answered");
    m->grp_state = IG_GRP_NONE;
    if (lost || rc || c->state != IG_ST_STREAM || m->grp_gen != c->gen)
        return rc ? rc : 0;
    wire_buf_t b = {0};
    rc = wire_enc_group_abort(&b, round) == 0 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = ig_send_request(c, &b, "GROUP_ABORT");
    wire_buf_free(&b);
    return rc;
}
