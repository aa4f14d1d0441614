/*
 * The consistency stage (architecture.md, "consistency"): replication
 * groups of machines and the rounds that make their group points, a
 * consistent cut across every member.
 *
 * A round, run by the coordinator on the event loop over the agents'
 * connections (ingest_group_prepare & co.), is two-phase:
 *   prepare  every member holds the completion of new writes (app rounds:
 *            after its pre-script quiesced the applications) and reports
 *            the stream position its group tag will follow;
 *   commit   once every member is held, each appends the group tag (the
 *            round's id, its name) and releases (app: post-script).
 * Every member is held at once between the last PREPARED and the first
 * COMMIT, so no write that completed after the cut on one member can have
 * caused a write before the cut on another: the cut is consistent. If a
 * member fails, disconnects or is not held within the round's hold limit
 * (default 100 ms for crash rounds), the round is aborted everywhere and
 * writes resume; each agent also releases on its own at the limit, so the
 * hold never outlasts it.
 *
 * After a commit, a worker waits until every member's tag is processed,
 * then records the group point (pts_group_point_add). A round that does
 * not become a group point is recorded with its reason (the member and
 * what happened); members keep their own points throughout.
 *
 * Rounds run on each group's cadence (crash rounds every 10 s by default,
 * app rounds every hour) and on request (cns_round_now). The round history
 * is kept in memory (the newest CNS_HISTORY rounds per group): the group
 * points themselves are in the index.
 *
 * Groups come from the configuration file (read-only here) and from the
 * API, which makes, changes and deletes them while rounds run
 * (cns_group_put, cns_group_delete) and keeps them in DATA/groups.json
 * (cns_store_*). A change of members aborts the round in flight; rounds
 * already made keep the members they were made with.
 */
#ifndef TM_CONSISTENCY_H
#define TM_CONSISTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "ingest/ingest.h"
#include "points/points.h"

#define CNS_DEFAULT_CRASH_EVERY_NS (10ull * 1000000000ull)
#define CNS_MIN_CRASH_EVERY_NS (1ull * 1000000000ull)
#define CNS_DEFAULT_APP_EVERY_NS (3600ull * 1000000000ull)
#define CNS_DEFAULT_HOLD_MS 100u
#define CNS_DEFAULT_APP_HOLD_MS 10000u /* the pre-scripts run before the hold; this bounds the hold only */
#define CNS_MAX_HOLD_MS 60000u
#define CNS_HISTORY 64u

typedef struct cns_group_cfg {
    const char *name;
    const char *const *members;
    size_t nmembers;
    uint64_t crash_every_ns; /* 0: default; UINT64_MAX: none on a schedule */
    uint64_t app_every_ns;   /* 0: default; UINT64_MAX: none on a schedule */
    uint32_t hold_ms;        /* crash rounds; 0: default */
    uint32_t app_hold_ms;    /* app rounds; 0: default */
    bool configured;         /* from the configuration file: the API may not change it */
} cns_group_cfg_t;

typedef struct cns cns_t;

/*
 * Start the coordinator for groups (copied, as cns_group_put makes them:
 * two groups of one name, or a machine in two groups, are refused with err
 * naming them) on loop. pts learns the groups (pts_set_groups). 0 or a
 * negative error with err saying why.
 */
int cns_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cns_group_cfg_t *groups, size_t n, cns_t **out,
              char *err, size_t errlen);

/* Stop: rounds in flight are aborted, the workers waited for, then
 * cb(arg) on the loop. NULL ok (cb is then called at once). */
void cns_stop(cns_t *c, void (*cb)(void *arg), void *arg);

/* Start a round of group now (app or crash). 0, TM_ENOTFOUND (no such
 * group), -EBUSY (a round of it is in flight). On the loop. */
int cns_round_now(cns_t *c, const char *group, bool app, uint64_t *round);

#define CNS_PUT_CREATE 1u /* the group must not exist yet */
#define CNS_PUT_CHANGE 2u /* it must exist */
#define CNS_PUT_CHECK 4u  /* only say whether the put would work */

/*
 * Make group def (copied), or change the group of that name: its members
 * and settings (a round in flight is aborted, "the group was changed").
 * Members' existence on this appliance is the caller's to check. On the
 * loop. 0, or with err saying why: -EEXIST (CREATE, the name is taken),
 * TM_ENOTFOUND (CHANGE, no such group), -EPERM (a configured group and def
 * is not), -EBUSY (a member is in another group), TM_EINVAL (no members,
 * too many, one twice), -ESHUTDOWN, -ENOMEM.
 */
int cns_group_put(cns_t *c, const cns_group_cfg_t *def, unsigned flags, char *err, size_t errlen);
/* Delete a group: its round in flight is aborted; its group points stay in
 * the index (retention ages them out). 0, TM_ENOTFOUND, -EPERM (configured). */
int cns_group_delete(cns_t *c, const char *name, char *err, size_t errlen);

/*
 * Definitions in JSON (docs/api.md, "Replication groups"): {"name",
 * "members": [...], "crash_every_seconds", "app_every_seconds", "hold_ms",
 * "app_hold_ms"}; a setting left out is its default, an "…_every_seconds"
 * of null means none on a schedule. cns_def_parse fills out with strings
 * borrowed from o (keep o alive) and an allocated member array (free with
 * cns_def_free): 0, TM_EINVAL with err, -ENOMEM.
 */
int cns_def_parse(json_t *o, cns_group_cfg_t *out, char *err, size_t errlen);
void cns_def_free(cns_group_cfg_t *d);
/* d as a definition with every setting written out (defaults filled in). */
json_t *cns_def_json(const cns_group_cfg_t *d);
/* The definition of group, defaults filled in (a new reference), or NULL;
 * *configured (may be NULL) says where it comes from. */
json_t *cns_group_def_json(cns_t *c, const char *group, bool *configured);
/* The definitions of the groups made through the API, in order. */
json_t *cns_stored_defs(cns_t *c);

/*
 * DATA/groups.json (docs/data-folder.md): {"version": 1, "groups":
 * [definition...]}, replaced whole (base/file.h). cns_store_load gives the
 * array (empty when there is no file); TM_ECORRUPT or TM_EVERSION with err
 * naming the file. cns_store_with is defs with name's definition replaced
 * by def (or added; def NULL: removed), a new array.
 */
#define CNS_STORE_FILE "groups.json"
#define CNS_STORE_VERSION 1
int cns_store_load(const char *data_dir, json_t **defs, char *err, size_t errlen);
/* The same from the file's text (no file named in err). */
int cns_store_parse(const char *text, size_t len, json_t **defs, char *err, size_t errlen);
int cns_store_save(const char *data_dir, json_t *defs, char *err, size_t errlen);
json_t *cns_store_with(json_t *defs, const char *name, json_t *def);

/* The groups as GET /v1/groups shows them (a new reference), on the loop:
 * [{"name", "members", "crash_every_seconds", "app_every_seconds",
 *   "hold_ms", "app_hold_ms", "rounds": {"committed", "recorded",
 *   "aborted"}, "last_round": round | null, "history": [round...]}] */
json_t *cns_groups_json(cns_t *c);
/* Whether there is a group of that name (NULL c: none). */
bool cns_has_group(cns_t *c, const char *name);
/* One group, or NULL when there is no such group. */
json_t *cns_group_json(cns_t *c, const char *group);

/* Per group, for /metrics. */
typedef struct cns_group_stats {
    char name[PTS_MAX_GROUP_NAME + 1];
    size_t members;
    uint64_t committed, recorded, aborted, unrecorded;
    double last_prepare_s;   /* the newest committed round's prepare (first PREPARE .. last PREPARED); -1: none */
    double last_round_s;     /* the newest recorded round's, from its start to its group point; -1: none */
    double last_point_age_s; /* the age of the newest group point's cut made since start; -1: none */
} cns_group_stats_t;
/* How many groups there are; up to max groups' figures into out, how
 * many. On the loop. */
size_t cns_group_count(cns_t *c);
size_t cns_stats(cns_t *c, cns_group_stats_t *out, size_t max);

/* Hold and round figures of the coordinator, for benchmarks: the round
 * times (prepare sent .. last member released, ns) of the newest rounds. */
size_t cns_round_times(cns_t *c, const char *group, uint64_t *ns, size_t max);

#endif
