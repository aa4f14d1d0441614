/*
 * Inside the consistency stage: the coordinator's state, shared by its
 * files (coordinator.c runs the rounds, groups.c makes, changes and drops
 * groups, report.c shows them). Everything here is touched on the loop's
 * thread only, but for what a recording reads on the thread pool: its own
 * copy of the round and the round's member list, which never changes.
 */
#ifndef TM_CONSISTENCY_CNS_INT_H
#define TM_CONSISTENCY_CNS_INT_H

#include "consistency/consistency.h"

/* A group's member list, shared by the group and each round made with it
 * (a change of members makes a new list; old rounds keep theirs). */
typedef struct cns_members {
    unsigned refs;
    size_t n;
    char *names[];
} cns_members_t;

cns_members_t *cns_members_new(const char *const *names, size_t n);
cns_members_t *cns_members_ref(cns_members_t *m);
void cns_members_unref(cns_members_t *m);

typedef enum { R_PREPARING, R_COMMITTED, R_RECORDED, R_ABORTED, R_UNRECORDED } cns_rstate_t;

extern const char *const cns_rstate_names[];

typedef struct cns_round {
    uint64_t id;     /* its start time, ns: unique per appliance, the members' tag id */
    bool app;
    cns_rstate_t state;
    uint64_t started_ns, committed_ns, ended_ns; /* monotonic */
    uint64_t started_wall;
    char reason[256];
    size_t nprepared;
    cns_members_t *m; /* the members it was run with */
    uint64_t *seq;    /* per member: PREPARED's seq, then (recorded) its group tag's point */
    bool *held;       /* per member: PREPARED came */
} cns_round_t;

typedef struct cns_group {
    cns_t *c;
    /* References: being one of c's groups, each open timer, each prepare
     * callback ingest owes, each recording in flight. A deleted group
     * lives on until the last goes. */
    unsigned refs;
    bool attached;
    bool configured; /* from the configuration file: read-only through the API */
    char *name;
    cns_members_t *m;
    uint64_t crash_every_ns, app_every_ns;
    uint32_t hold_ms, app_hold_ms;
    uv_timer_t crash_t, app_t, hold_t;
    cns_round_t *cur;              /* preparing, or NULL */
    cns_round_t hist[CNS_HISTORY]; /* ring, the newest at (next - 1) */
    size_t next, nhist;
    uint64_t n_committed, n_recorded, n_aborted, n_unrecorded;
    uint64_t last_point_wall;      /* the cut time of the newest group point recorded since start, 0: none */
    uint64_t round_ns[CNS_HISTORY];
    size_t nround_ns;
} cns_group_t;

struct cns {
    uv_loop_t *loop;
    ingest_t *ig;
    pts_t *pts;
    cns_group_t **groups; /* the groups there are, in the order they came */
    size_t ngroups, cap;
    unsigned workers;     /* recordings in flight */
    size_t outstanding;   /* prepare callbacks ingest still owes us */
    unsigned open_handles;
    bool stopping;
    void (*stopped)(void *arg);
    void *stopped_arg;
    uint64_t last_id;
};

/* coordinator.c */
void cns__abort(cns_group_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* (Re)start g's cadence timers from its settings. */
void cns__schedule(cns_group_t *g);
void cns__round_free(cns_round_t *r);

/* groups.c */
cns_group_t *cns__find(cns_t *c, const char *name);
void cns__group_unref(cns_group_t *g);
void cns__maybe_free(cns_t *c);

#endif
