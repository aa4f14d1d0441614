/*
 * What the appliance asks of a machine's agent, outside the stream: a tag
 * (TAG_REQUEST), a STOP before a planned failover and the RESUME that
 * cancels it, and the machine's retirement after a committed failover.
 *
 * STOP and RESUME are remembered per machine (ig_machine_t.stop) and told
 * again to every later session right after its WELCOME: a session can end
 * between the request and the agent reading it, and an agent keeps its
 * stop across reconnections, so the appliance's last word must reach it
 * whichever session is live.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/ingest_int.h"

/* ---- retired machines ---------------------------------------------------- */

const ig_retired_t *ig_retired_find(const ingest_t *ig, const char *name)
{
    for (size_t i = 0; i < ig->nretired; i++)
        if (strcmp(ig->retired[i].name, name) == 0)
            return &ig->retired[i];
    return NULL;
}

/* Add name (or replace its reason); 0 or -ENOMEM. */
static int ig__retired_add(ingest_t *ig, const char *name, const char *reason)
{
    ig_retired_t *r = (ig_retired_t *)ig_retired_find(ig, name);
    if (!r) {
        if (tm_grow((void **)&ig->retired, &ig->cap_retired, ig->nretired + 1, sizeof ig->retired[0]) != 0)
            return -ENOMEM;
        r = &ig->retired[ig->nretired++];
        snprintf(r->name, sizeof r->name, "%s", name);
    }
    snprintf(r->reason, sizeof r->reason, "%s", reason && *reason ? reason : INGEST_RETIRED_REASON);
    return 0;
}

int ig_retired_init(ingest_t *ig, const ingest_options_t *opts, char *err, size_t errlen)
{
    for (size_t i = 0; i < opts->nretired; i++) {
        const char *name = opts->retired[i];
        if (!name || !wire_name_ok(name)) {
            snprintf(err, errlen, "retired machine '%s' is not a machine name", name ? name : "(null)");
            return TM_EINVAL;
        }
        if (ig__retired_add(ig, name, NULL) != 0) {
            snprintf(err, errlen, "%s", tm_strerror(-ENOMEM));
            return -ENOMEM;
        }
        ig_machine_t *m = ig_machine_find(ig, name);
        if (m)
            m->retired = true;
    }
    if (opts->nretired)
        tm_info("ingest: %zu retired machine%s: their agents are refused", opts->nretired,
                opts->nretired == 1 ? "" : "s");
    return 0;
}

void ig_retired_free(ingest_t *ig)
{
    tm_free(ig->retired);
    ig->retired = NULL;
    ig->nretired = ig->cap_retired = 0;
}

void ig_control_retire_conn(ig_machine_t *m)
{
    ig_conn_t *c = m->conn;
    if (!c)
        return;
    /* What it sent before is durable now: say so before the ERROR, so the
     * agent does not hold acknowledged records as unacknowledged. */
    if (c->state == IG_ST_STREAM) {
        wire_buf_t b = {0};
        if (wire_enc_ack(&b, m->durable_seq) == 0)
            ig_conn_send(c, &b);
        wire_buf_free(&b);
    }
    const ig_retired_t *r = ig_retired_find(c->ig, m->name);
    ig_conn_fail(c, WIRE_E_STOPPED, "%s", r ? r->reason : INGEST_RETIRED_REASON);
}

int ingest_retire_machine(ingest_t *ig, const char *machine, const char *reason)
{
    if (!machine)
        return TM_EINVAL;
    if (!wire_name_ok(machine))
        return TM_ENOTFOUND;
    ig_machine_t *m = ig_machine_find(ig, machine);
    if (!m && !ig_registry_lookup(ig, machine) && !ig_retired_find(ig, machine))
        return TM_ENOTFOUND;
    if (ig__retired_add(ig, machine, reason) != 0)
        return -ENOMEM;
    tm_info("ingest: machine %s retired: %s; its agents are refused from now on", machine,
            ig_retired_find(ig, machine)->reason);
    if (!m)
        return 0;
    m->retired = true;
    m->stop = IG_STOP_NONE;
    ig_group_retired(m);
    /* Its session goes once what it sent is durable (ig_conn_settled);
     * nothing in flight: now. */
    if (m->conn && m->inflight == 0)
        ig_control_retire_conn(m);
    else if (m->conn)
        tm_debug("ingest: machine %s: its session is closed once its %u batch%s in flight %s durable", machine,
                 m->inflight, m->inflight == 1 ? "" : "es", m->inflight == 1 ? "is" : "are");
    return 0;
}

/* ---- finding the agent to ask ------------------------------------------------ */

int ig_control_target(ingest_t *ig, const char *machine, ig_machine_t **out, ig_conn_t **conn)
{
    *out = NULL;
    *conn = NULL;
    ig_machine_t *m = wire_name_ok(machine) ? ig_machine_find(ig, machine) : NULL;
    if (!m) {
        /* Registered (or retired) but never connected since the journal
         * began: it exists, its agent is just not here. */
        if (wire_name_ok(machine) && (ig_registry_lookup(ig, machine) || ig_retired_find(ig, machine)))
            return -ENOTCONN;
        return TM_ENOTFOUND;
    }
    *out = m;
    if (m->retired || !m->conn || (m->conn->state != IG_ST_WAIT && m->conn->state != IG_ST_STREAM))
        return -ENOTCONN;
    *conn = m->conn;
    return 0;
}

int ig_send_request(ig_conn_t *c, const wire_buf_t *b, const char *what)
{
    int rc = ig_conn_send(c, b);
    if (rc != 0 && c->state == IG_ST_STREAM)
        ig_conn_fail(c, WIRE_E_INTERNAL, "cannot send %s: %s", what, tm_strerror(rc));
    return rc;
}

static int ig__send_stop(ig_conn_t *c)
{
    ig_machine_t *m = c->m;
    wire_buf_t b = {0};
    int rc = wire_enc_stop(&b, m->stop_id, m->stop_name, m->stop_reason) == 0 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = ig_send_request(c, &b, "STOP");
    wire_buf_free(&b);
    return rc;
}

static int ig__send_resume(ig_conn_t *c)
{
    wire_buf_t b = {0};
    int rc = wire_enc_resume(&b, "") == 0 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = ig_send_request(c, &b, "RESUME");
    wire_buf_free(&b);
    return rc;
}

void ig_control_welcomed(ig_conn_t *c)
{
    ig_machine_t *m = c->m;
    char who[160];
    if (m->stop == IG_STOP_STOPPED) {
        if (ig__send_stop(c) == 0)
            tm_info("ingest: %s: sent STOP after its WELCOME (final tag '%s', id %" PRIu64 "): the machine is "
                    "stopped", ig_conn_who(c, who, sizeof who), m->stop_name, m->stop_id);
    } else if (m->stop == IG_STOP_RESUMED) {
        ig__send_resume(c);
    }
}

/* ---- the requests ------------------------------------------------------------ */

int ingest_request_tag(ingest_t *ig, const char *machine, uint8_t tag_kind, uint64_t id, const char *name)
{
    char who[160];
    wire_buf_t b = {0};

    if (!machine || !name || !wire_name_ok(name) || (tag_kind != WIRE_TAG_CRASH && tag_kind != WIRE_TAG_APP))
        return TM_EINVAL;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (rc == -ENOTCONN)
        return TM_ECLOSED;
    if (rc)
        return rc;
    /* Only a welcomed session: before WELCOME the agent does not know where
     * its stream resumes, and a tag must take a place in it. */
    if (c->state != IG_ST_STREAM)
        return TM_ECLOSED;
    rc = wire_enc_tag_request(&b, tag_kind, id, name);
    if (rc == 0)
        rc = ig_send_request(c, &b, "a tag request");
    wire_buf_free(&b);
    if (rc != 0)
        return rc;
    tm_info("ingest: %s: asked for %s tag '%s' (id %" PRIu64 ")", ig_conn_who(c, who, sizeof who),
            tag_kind == WIRE_TAG_APP ? "an app" : "a crash", name, id);
    return 0;
}

int ingest_request_stop(ingest_t *ig, const char *machine, uint64_t id, const char *name, const char *reason)
{
    char who[160];
    if (!machine || !name || !wire_name_ok(name))
        return TM_EINVAL;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (rc)
        return rc;
    ig_stop_t was = m->stop;
    uint64_t was_id = m->stop_id;
    char was_name[sizeof m->stop_name], was_reason[sizeof m->stop_reason];
    memcpy(was_name, m->stop_name, sizeof was_name);
    memcpy(was_reason, m->stop_reason, sizeof was_reason);
    m->stop = IG_STOP_STOPPED;
    m->stop_id = id;
    snprintf(m->stop_name, sizeof m->stop_name, "%s", name);
    /* cut, not refused: the reason is for a person's log */
    snprintf(m->stop_reason, sizeof m->stop_reason, "%s", reason ? reason : "");
    if (c->state == IG_ST_STREAM && (rc = ig__send_stop(c)) != 0) {
        m->stop = was;
        m->stop_id = was_id;
        memcpy(m->stop_name, was_name, sizeof was_name);
        memcpy(m->stop_reason, was_reason, sizeof was_reason);
        return rc;
    }
    /* (a session waiting for its WELCOME gets it right after it) */
    tm_info("ingest: %s: asked to stop taking writes (final tag '%s', id %" PRIu64 "): %s",
            ig_conn_who(c, who, sizeof who), name, id, m->stop_reason[0] ? m->stop_reason : "no reason given");
    return 0;
}

int ingest_request_resume(ingest_t *ig, const char *machine)
{
    char who[160];
    if (!machine)
        return TM_EINVAL;
    ig_machine_t *m;
    ig_conn_t *c;
    int rc = ig_control_target(ig, machine, &m, &c);
    if (m && !m->retired) {
        /* Even without an agent here: its next session hears it. */
        m->stop = IG_STOP_RESUMED;
    }
    if (rc)
        return rc;
    if (c->state == IG_ST_STREAM && (rc = ig__send_resume(c)) != 0)
        return rc;
    tm_info("ingest: %s: asked to take writes again", ig_conn_who(c, who, sizeof who));
    return 0;
}
