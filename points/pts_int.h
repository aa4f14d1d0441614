/*
 * Inside the points stage: the processor's state and how it is shared.
 *
 * Two locks. `wmu` is held by the processor for each cycle (read records,
 * build one write batch, commit it) and by pts_cut_latest while it cuts; it
 * guards the private machine table `priv` and the write batch, so the index
 * has one writer at a time. `mu` guards what readers see: the published
 * table `pub` (a copy of each machine as of the last commit), the name
 * lookup and the stats; `cv` wakes pts_sync waiters after each commit.
 * Lock order: wmu, then mu.
 */
#ifndef TM_POINTS_INT_H
#define TM_POINTS_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "points/index.h"
#include "points/points.h"
#include "wire/msg.h"

/* An extent piece waiting for the cycle's commit. */
typedef struct pts_pending {
    uint8_t k[PTS_EXTENT_KEY_LEN];
    uint8_t v[PTS_EXTENT_VAL_LEN];
} pts_pending_t;

typedef struct pts_pin {
    uint32_t mid;
    uint64_t seq;
} pts_pin_t;

struct pts {
    jnl_t *jnl;
    pts_index_t *ix;
    uint64_t cadence_ns;
    /* retention (retention.c) */
    char *base_dir;
    uint64_t retention_ns;
    pts_retention_t *per; /* names owned */
    size_t nper;
    uint64_t retain_every_ns;
    bool auto_retain;
    bool retire_journal;
    uint64_t last_retain_ns; /* under wmu */
    uint64_t reserve_bytes;  /* processing pauses when less is free where the index is */
    pthread_t thread;
    bool started;

    pthread_mutex_t wmu;
    /* under wmu */
    pts_mrec_t *priv;    /* by id - 1 */
    bool *dirty;         /* by id - 1: changed since the last publish */
    size_t nmach, cap;
    uint32_t next_id;
    uint64_t next_lsn;
    uint64_t last_ns;    /* time_ns of the record before next_lsn */
    jnl_pos_t next_pos;  /* where the record after it starts (for the lag in bytes) */
    bool have_version;   /* "V" is in the index */
    uint64_t journal_id;
    jnl_reader_t *rd;
    pts_wb_t *wb;
    wire_records_t *recs; /* decode scratch */
    pts_pending_t *pend;  /* the cycle's extent pieces, put in key order at commit */
    size_t npend, pend_cap;
    uint64_t c_records, c_extents, c_bytes, c_points; /* counted in the cycle, published after */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    pts_mrec_t *pub;
    size_t npub;
    uint32_t *names;     /* open addressing: id or 0; by a hash of the name */
    size_t names_cap;
    pts_stats_t stats;
    jnl_pos_t pub_pos;   /* next_pos as of the last commit */
    uint64_t pub_last_ns; /* last_ns as of the last commit */
    pts_pin_t *pins;     /* readers' sequences the horizon must not pass */
    char **group_of;     /* by machine name, pairs: name, group (groups.c) */
    size_t ngroup_of;
    size_t npins, pins_cap;
    bool stop;
};

/* Name lookup, under mu: the machine's id or 0. */
uint32_t pts__name_find(const pts_t *p, const char *name);
/* Add id (whose pub/priv record has the name). 0 or -ENOMEM. Under mu. */
int pts__name_add(pts_t *p, uint32_t id, const char *name);

/* True (and stats.paused set, logged once) when the index's file system has
 * less than reserve_bytes free. */
bool pts__low_space(pts_t *p);

/* The processor thread's body (processor.c). */
void *pts__run(void *arg);

/* The machine changed: its record goes into the next commit's batch (once,
 * however often it changed) and readers see it after that commit. */
static inline void pts__touch(pts_t *p, pts_mrec_t *r)
{
    p->dirty[r->m.id - 1] = true;
}

/* Every disk copied and none resyncing. */
bool pts__consistent(const pts_mrec_t *r);

/* Cut a crash point at the machine's last processed sequence unless one is
 * there: puts the point and the machine record into wb. Under wmu. Returns
 * true when it cut. */
bool pts__cut(pts_t *p, pts_mrec_t *r, pts_kind_t kind, const char *tag, uint64_t tag_id, uint64_t seq,
              uint64_t time_ns);
/* Commit wb with the position and publish the dirty machines. Under wmu. */
int pts__commit(pts_t *p);

/* Retention (retention.c): a machine's window; one pass. Under wmu. */
uint64_t pts__window(const pts_t *p, const char *machine);
int pts__retain_locked(pts_t *p, uint64_t now);

/* Retire the journal below the oldest record an index entry names. Under wmu. */
int pts__retire(pts_t *p);

/* Load the failover records (failover.c), after the machines. */
int pts__load_failovers(pts_t *p, char *err, size_t errlen);

/* Forget group points some member's point of which is gone (groups.c). Under wmu. */
int pts__groups_retain(pts_t *p);
void pts__groups_free(pts_t *p);
/* Whether group point gp holds every machine now in group (pts_set_groups). */
bool pts__group_covers(pts_t *p, const char *group, const pts_group_point_t *gp);
/* Whether every member of gp still has its multi-VM point (index reads). */
bool pts__whole(pts_t *p, const pts_group_point_t *gp);
/* Each group point of group, newest first, to fn, which owns gp->members
 * (whole not set: fn checks what it needs) and returns 0 for more, 1 to
 * stop, or an error to stop with. 0, TM_ECORRUPT, -ENOMEM or fn's error. */
typedef int (*pts__group_visit_fn)(pts_t *p, pts_group_point_t *gp, void *arg);
int pts__group_walk(pts_t *p, const char *group, pts__group_visit_fn fn, void *arg);

/* Load everything from the index at open (load.c). */
int pts__load(pts_t *p, char *err, size_t errlen);

#endif
