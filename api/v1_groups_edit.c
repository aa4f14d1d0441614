/*
 * POST /v1/groups, PATCH and DELETE /v1/groups/{g} (docs/api.md,
 * "Replication groups"): groups made, changed and deleted while the
 * appliance runs. A change is checked against the coordinator on the
 * loop, written to DATA/groups.json on the thread pool (it waits for the
 * disk), then applied on the loop, so an answered change survives a
 * restart. One change at a time: the next is refused while one is saved.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/v1.h"
#include "base/err.h"
#include "base/mem.h"

typedef struct api_gchange {
    api_v1_t *a;
    char name[PTS_MAX_GROUP_NAME + 1];
    json_t *def;    /* the new definition, NULL: delete */
    json_t *stored; /* the file's new content */
    unsigned flags; /* CNS_PUT_CREATE or CNS_PUT_CHANGE */
    int rc;
    char err[512];
} api_gchange_t;

/* A put's or delete's error as its reply. */
static void api__gchange_error(tm_http_req_t *req, int rc, const char *err)
{
    switch (rc) {
    case -EEXIST:
    case -EBUSY:
    case -EPERM:
        tm_http_reply_error(req, 409, "conflict", "%s", err);
        break;
    case TM_ENOTFOUND:
        tm_http_reply_error(req, 404, "unknown-group", "%s", err);
        break;
    case TM_EINVAL:
        tm_http_reply_error(req, 400, "bad-request", "%s", err);
        break;
    default:
        tm_http_reply_error(req, 500, "internal", "%s", err);
    }
}

static void api__gchange_work(void *arg)
{
    api_gchange_t *j = arg;
    j->rc = cns_store_save(j->a->data_dir, j->stored, j->err, sizeof j->err);
}

static void api__gchange_done(tm_http_req_t *req, void *arg)
{
    api_gchange_t *j = arg;
    api_v1_t *a = j->a;
    a->groups_saving = false;
    if (j->rc) {
        tm_http_reply_error(req, 500, "internal", "the group was not changed: %s", j->err);
        goto out_free;
    }
    if (j->def) {
        cns_group_cfg_t d;
        int rc = cns_def_parse(j->def, &d, j->err, sizeof j->err);
        if (rc == 0) {
            rc = cns_group_put(a->cns, &d, j->flags, j->err, sizeof j->err);
            cns_def_free(&d);
        }
        if (rc) {
            api__gchange_error(req, rc, j->err);
            goto out_free;
        }
        tm_http_reply_json(req, j->flags & CNS_PUT_CREATE ? 201 : 200,
                           json_pack("{s:o}", "group", cns_group_json(a->cns, j->name)));
    } else {
        int rc = cns_group_delete(a->cns, j->name, j->err, sizeof j->err);
        if (rc) {
            api__gchange_error(req, rc, j->err);
            goto out_free;
        }
        tm_http_reply_json(req, 200, json_pack("{s:s,s:b}", "group", j->name, "deleted", 1));
    }
out_free:
    json_decref(j->def);
    json_decref(j->stored);
    tm_free(j);
}

/* Check def (NULL: delete name) against the coordinator and the machines
 * of this appliance, then save and apply it. Takes def's reference. */
static void api__gchange(api_v1_t *a, tm_http_req_t *req, const char *name, json_t *def, unsigned flags)
{
    char err[512];
    if (!a->cns) {
        json_decref(def);
        tm_http_reply_error(req, 500, "internal", "the appliance has no coordinator for groups");
        return;
    }
    if (a->groups_saving) {
        json_decref(def);
        tm_http_reply_error(req, 409, "conflict", "another change of groups is being saved; ask again");
        return;
    }
    if (def) {
        cns_group_cfg_t d;
        int rc = cns_def_parse(def, &d, err, sizeof err);
        if (rc) {
            json_decref(def);
            api__gchange_error(req, rc, err);
            return;
        }
        for (size_t i = 0; i < d.nmembers && rc == 0; i++) {
            if (!ingest_machine_known(a->ingest, d.members[i])) {
                tm_http_reply_error(req, 404, "unknown-machine",
                                    "group %s: machine %s is not on this appliance (tidemark machine add %s; a "
                                    "group never spans two appliances)",
                                    d.name, d.members[i], d.members[i]);
                rc = TM_ENOTFOUND;
            }
        }
        if (rc == 0 && (rc = cns_group_put(a->cns, &d, flags | CNS_PUT_CHECK, err, sizeof err)) != 0)
            api__gchange_error(req, rc, err);
        /* kept with every setting written out: a later build's defaults
         * do not change a group made now */
        json_t *full = rc == 0 ? cns_def_json(&d) : NULL;
        cns_def_free(&d);
        json_decref(def);
        if (rc)
            return;
        if (!(def = full)) {
            tm_http_reply_error(req, 500, "internal", "out of memory");
            return;
        }
    } else {
        bool configured = false;
        json_t *cur = cns_group_def_json(a->cns, name, &configured);
        json_decref(cur);
        if (!cur) {
            tm_http_reply_error(req, 404, "unknown-group", "there is no replication group '%s' on this appliance",
                                name);
            return;
        }
        if (configured) {
            tm_http_reply_error(req, 409, "conflict", "group %s is defined in the configuration file: delete it "
                                "there", name);
            return;
        }
    }
    api_gchange_t *j = tm_calloc(1, sizeof *j);
    json_t *stored = cns_stored_defs(a->cns);
    if (j && stored)
        j->stored = cns_store_with(stored, name, def);
    json_decref(stored);
    if (!j || !j->stored) {
        if (j)
            tm_free(j);
        json_decref(def);
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->a = a;
    snprintf(j->name, sizeof j->name, "%s", name);
    j->def = def;
    j->flags = flags;
    a->groups_saving = true;
    api_defer(a, req, api__gchange_work, api__gchange_done, j);
}

void api_v1_group_create(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    json_t *body = tm_http_json(req);
    if (!json_is_object(body)) {
        tm_http_reply_error(req, 400, "bad-request", "the body is a group: {\"name\", \"members\": [...], ...}");
        return;
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || strlen(name) > PTS_MAX_GROUP_NAME) {
        tm_http_reply_error(req, 400, "bad-request", "name is a group name of 1 to %u characters",
                            PTS_MAX_GROUP_NAME);
        return;
    }
    api__gchange(a, req, name, json_deep_copy(body), CNS_PUT_CREATE);
}

void api_v1_group_change(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    const char *name = tm_http_param(req, "group");
    json_t *body = tm_http_json(req);
    if (!json_is_object(body)) {
        tm_http_reply_error(req, 400, "bad-request",
                            "the body holds the fields to change: {\"members\": [...], \"crash_every_seconds\", ...}");
        return;
    }
    json_t *bn = json_object_get(body, "name");
    if (bn && (!json_is_string(bn) || strcmp(json_string_value(bn), name) != 0)) {
        tm_http_reply_error(req, 400, "bad-request", "a group cannot be renamed: make a new one and delete this");
        return;
    }
    bool configured = false;
    json_t *def = a->cns ? cns_group_def_json(a->cns, name, &configured) : NULL;
    if (!def) {
        tm_http_reply_error(req, 404, "unknown-group", "there is no replication group '%s' on this appliance", name);
        return;
    }
    if (configured) {
        json_decref(def);
        tm_http_reply_error(req, 409, "conflict", "group %s is defined in the configuration file: change it there",
                            name);
        return;
    }
    json_object_update(def, body); /* unknown fields stay in and are refused by the parse */
    api__gchange(a, req, name, def, CNS_PUT_CHANGE);
}

void api_v1_group_delete(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    api__gchange(a, req, tm_http_param(req, "group"), NULL, 0);
}
