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
} cns_group_cfg_t;

typedef struct cns cns_t;

/*
 * Start the coordinator for groups (copied; each member in one group at
 * most, checked by the caller) on loop. pts learns the groups
 * (pts_set_groups). 0 or a negative error with err saying why.
 */
int cns_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cns_group_cfg_t *groups, size_t n, cns_t **out,
              char *err, size_t errlen);

/* Stop: rounds in flight are aborted, the workers waited for, then
 * cb(arg) on the loop. NULL ok (cb is then called at once). */
void cns_stop(cns_t *c, void (*cb)(void *arg), void *arg);

/* Start a round of group now (app or crash). 0, TM_ENOTFOUND (no such
 * group), -EBUSY (a round of it is in flight). On the loop. */
int cns_round_now(cns_t *c, const char *group, bool app, uint64_t *round);

/* The groups as GET /v1/groups shows them (a new reference), on the loop:
 * [{"name", "members", "crash_every_seconds", "app_every_seconds",
 *   "hold_ms", "app_hold_ms", "rounds": {"committed", "recorded",
 *   "aborted"}, "last_round": round | null, "history": [round...]}] */
json_t *cns_groups_json(cns_t *c);
/* One group, or NULL when there is no such group. */
json_t *cns_group_json(cns_t *c, const char *group);

/* Hold and round figures of the coordinator, for benchmarks: the round
 * times (prepare sent .. last member released, ns) of the newest rounds. */
size_t cns_round_times(cns_t *c, const char *group, uint64_t *ns, size_t max);

#endif
