/*
 * The points stage: a processor that tails the durable journal, indexes
 * every write, zero and trim of every machine in RocksDB (index.h), and
 * keeps the catalog of recovery points. README.md in this folder has the
 * rules that span the files; docs/index-format.md the RocksDB layout.
 *
 * Threads: one processor thread reads the journal and is the only writer of
 * the index. Every function here may be called from any thread; the ones
 * that wait (pts_sync, pts_cut_latest) must not run on an event loop's
 * thread (use uv_queue_work).
 */
#ifndef TM_POINTS_H
#define TM_POINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "wire/wire.h"

typedef struct pts pts_t;
typedef struct pts_index pts_index_t;

#define PTS_DEFAULT_CADENCE_MS 1000u
#define PTS_MIN_CADENCE_MS 100u
#define PTS_MAX_CADENCE_MS 3600000u

typedef enum pts_kind {
    PTS_KIND_CRASH = 1, /* cut on the cadence (or on a crash tag of the agent) */
    PTS_KIND_APP = 2,   /* at an app-consistent tag of the agent */
    PTS_KIND_CUSTOM = 3, /* an @TIME position: not in the catalog */
} pts_kind_t;

const char *pts_kind_name(pts_kind_t k); /* "crash", "app", "custom" */

typedef struct pts_point {
    uint64_t seq;     /* the machine's stream sequence the point includes, up to */
    uint64_t time_ns; /* when the appliance received the batch holding seq */
    pts_kind_t kind;
    uint64_t tag_id;  /* the agent's tag id, app points; a group round's id for group tags */
    char tag[WIRE_MAX_NAME + 1]; /* the tag's name, "" for none */
    bool multivm;     /* part of a group point (a consistent cut across its group) */
} pts_point_t;

/* Where a machine stands in a failover (architecture.md, "Failover flows"). */
typedef enum pts_fo_state {
    PTS_FO_NONE = 0,      /* replicating */
    PTS_FO_ACTIVE = 1,    /* failed over to failover_seq: change-point and commit possible */
    PTS_FO_COMMITTED = 2, /* final: no points, no replication */
} pts_fo_state_t;

const char *pts_fo_state_name(pts_fo_state_t s); /* "none", "failed-over", "committed" */

typedef struct pts_disk {
    char name[WIRE_MAX_NAME + 1];
    uint64_t size;
    bool synced; /* its initial copy is complete */
    bool resync; /* a resync of it is under way (RESYNC seen, its SYNCED not yet) */
} pts_disk_t;

/* What the processor knows of one machine, as of the last commit. */
typedef struct pts_machine {
    char name[WIRE_MAX_NAME + 1];
    uint32_t id;          /* the index's short id for it */
    unsigned ndisks;
    pts_disk_t disks[WIRE_MAX_DISKS];
    uint64_t seq;         /* the last stream sequence processed */
    uint64_t seq_ns;      /* when the batch holding it was received */
    uint64_t first_seq;   /* the oldest sequence a point may name (the horizon) */
    uint64_t base_seq;    /* the replica base holds the disks as of this sequence (0: empty) */
    bool consistent;      /* every disk copied and none resyncing: points can be cut */
    uint64_t unsafe_since; /* when not consistent: the sequence where that began */
    bool has_point;
    pts_point_t latest;   /* the newest catalogued point, if has_point */
    uint8_t failover;     /* pts_fo_state_t (failover.c) */
    uint64_t failover_seq; /* PTS_FO_ACTIVE: the point its failed-over disks are served at */
    uint64_t failover_ns;  /* when it failed over (or changed point), or committed */
} pts_machine_t;

/* RocksDB's memtable flushes and compactions need room: processing pauses
 * rather than let it meet a full disk. */
#define PTS_DEFAULT_RESERVE (256ull << 20)
#define PTS_DEFAULT_RETENTION_NS (24ull * 3600 * 1000000000ull)
#define PTS_MAX_RETENTION_NS (30ull * 24 * 3600 * 1000000000ull)
#define PTS_MIN_RETENTION_NS (60ull * 1000000000ull)

/* A machine's own retention window, overriding the default. */
typedef struct pts_retention {
    const char *machine;
    uint64_t window_ns;
} pts_retention_t;

typedef struct pts_options {
    uint32_t cadence_ms; /* crash points while a machine writes; 0 = default */
    const char *base_dir; /* replica base images: base_dir/MACHINE/DISK.img; NULL = no retention */
    uint64_t retention_ns; /* how long points are kept; 0 = PTS_DEFAULT_RETENTION_NS */
    const pts_retention_t *per_machine; /* copied */
    size_t nper_machine;
    uint32_t retain_every_ms; /* how often the processor runs retention; 0 = every 10 s */
    bool no_auto_retain;  /* tests: retention only through pts_retain() */
    bool retire_journal;  /* retire journal segments once folded (needs ingest
                             to take machines' state from the index) */
    uint64_t reserve_bytes; /* free space the index's file system keeps; below
                               it processing pauses; 0 = PTS_DEFAULT_RESERVE */
} pts_options_t;

/*
 * Open (creating) the index in index_dir, check it belongs to this journal,
 * and start the processor from the position committed last. Errors:
 * TM_EVERSION (an index of another layout version), TM_EFOREIGN (the index
 * was made from another journal), TM_ERETIRED (the journal no longer holds
 * the records after the committed position), TM_ECORRUPT; err says why.
 */
int pts_open(const char *index_dir, jnl_t *jnl, const pts_options_t *opts, pts_t **out, char *err, size_t errlen);

/* Stop the processor and close the index. Safe on NULL. */
void pts_close(pts_t *p);

/* The index, for readers (target/). Valid until pts_close. */
pts_index_t *pts_index(pts_t *p);

/* Processing progress: everything below next_lsn is indexed. */
typedef struct pts_stats {
    uint64_t next_lsn;      /* the next journal record to process */
    uint64_t durable_lsn;   /* the journal's durable end when last looked */
    uint64_t lag_records;   /* durable records not yet processed */
    uint64_t lag_bytes;     /* their size in the journal */
    uint64_t lag_ns;        /* 0 when caught up; else now - time of the last record processed */
    uint64_t records;       /* journal records processed since open */
    uint64_t extents;       /* writes, zeroes and trims indexed since open */
    uint64_t bytes;         /* their disk bytes */
    uint64_t points;        /* points cut since open */
    int error;              /* a sticky failure that stopped processing, 0 if none */
    bool paused;            /* too little space where the index is: waiting for more */
} pts_stats_t;

void pts_get_stats(pts_t *p, pts_stats_t *st);

/* Wait until everything the journal held durably when called is processed.
 * 0, -ETIMEDOUT, -ENOSPC (processing is paused for lack of space), or the
 * processor's sticky error. */
int pts_sync(pts_t *p, int timeout_ms);

/* Machines, by name. 0 or TM_ENOTFOUND. */
int pts_machine(pts_t *p, const char *name, pts_machine_t *out);
/* All machines sorted by name: *out (tm_free it) and *n. 0 or -ENOMEM. */
int pts_machines(pts_t *p, pts_machine_t **out, size_t *n);
/* The same, with the journal position they reflect: every record below
 * *next_lsn is in them (and possibly some after it), none of those from
 * *next_lsn on is missing from the journal. For ingest's state at start. */
int pts_machines_at(pts_t *p, pts_machine_t **out, size_t *n, uint64_t *next_lsn);

/*
 * The "latest" selector: wait until everything received is processed
 * (pts_sync), then make sure a point exists at the machine's last
 * processed sequence (cutting a crash point there if there is none) and
 * return it. TM_ENOTFOUND (unknown machine), TM_ENOPOINT (nothing received
 * from it yet), -ETIMEDOUT, or the processor's error.
 */
int pts_cut_latest(pts_t *p, const char *machine, int timeout_ms, pts_point_t *out);

/* A point list query: newest first, at most limit (0 = no limit). */
typedef struct pts_query {
    unsigned kinds;     /* bit (1 << kind); 0 = every kind */
    uint64_t since_ns;  /* 0 = from the first */
    uint64_t until_ns;  /* 0 = to the last */
    size_t limit;
} pts_query_t;

/* *out (tm_free it), *n. 0, TM_ENOTFOUND (unknown machine), -ENOMEM. */
int pts_points(pts_t *p, const char *machine, const pts_query_t *q, pts_point_t **out, size_t *n);

/* The first points after seq (oldest first, at most limit): *out (tm_free
 * it), *n. 0, TM_ENOTFOUND (unknown machine), -ENOMEM. */
int pts_points_after(pts_t *p, const char *machine, uint64_t seq, size_t limit, pts_point_t **out, size_t *n);

/*
 * Resolve a selector other than `latest` (which needs pts_cut_latest):
 * latest-processed, latest-app, a point id (decimal), @TIME (RFC 3339).
 * Errors: TM_EINVAL (not a selector; why says what is wrong), TM_ENOTFOUND
 * (unknown machine), TM_ENOPOINT (valid, names no point; why says why).
 */
int pts_resolve(pts_t *p, const char *machine, const char *selector, pts_point_t *out, char *why, size_t whylen);

/*
 * Retention, as if the time were now_ns (docs/index-format.md, "Retention"):
 * thin each machine's points, drop those past its window (never its newest
 * point), move its horizon to the oldest point kept, fold the data before
 * the horizon into the replica base, and retire journal segments no index
 * entry needs any more. The processor runs it on its own every
 * retain_every_ms; this call runs it now and waits. 0 or an error.
 */
int pts_retain(pts_t *p, uint64_t now_ns);

/* The replica base image of a machine's disk, into buf ("" when the stage
 * runs without base_dir). */
void pts_base_path(const pts_t *p, const char *machine, const char *disk, char *buf, size_t len);

/*
 * Keep the horizon of machine mid at or below seq while a reader uses it:
 * 0, or TM_ENOPOINT when seq is already past the horizon. Every pin is
 * released with pts_unpin.
 */
int pts_pin(pts_t *p, uint32_t mid, uint64_t seq);
void pts_unpin(pts_t *p, uint32_t mid, uint64_t seq);

/*
 * Failovers (failover.c), kept in the index so that a restart serves the
 * failed-over disks again and refuses a committed machine's agent.
 *
 * pts_failover_set records that machine is failed over to point seq
 * (PTS_FO_ACTIVE; a change of point is another call) or no longer is
 * (PTS_FO_NONE: a cancelled or undone failover), durably before it
 * returns. An active failover pins its point (pts_pin) until it ends, across
 * restarts. Errors: TM_ENOTFOUND (unknown machine), TM_ENOPOINT (seq is past
 * the retention horizon), TM_EINVAL (the machine is committed), -EIO.
 */
int pts_failover_set(pts_t *p, const char *machine, pts_fo_state_t state, uint64_t seq, uint64_t now_ns);

/*
 * Commit the machine's failover (it must be PTS_FO_ACTIVE): every point,
 * extent, batch and window of it is deleted from the index, its replica
 * base images are removed, and the journal segments only it needed are
 * retired; from then on the processor skips anything more of it (ingest
 * must have stopped taking its writes first: ingest_retire_machine). The
 * machine stays known, PTS_FO_COMMITTED, with no point. Errors:
 * TM_ENOTFOUND, TM_EINVAL (not failed over), -EBUSY (readers other than
 * the failover itself still pin its points), -EIO.
 */
int pts_commit_machine(pts_t *p, const char *machine, uint64_t now_ns);

/*
 * Replication groups and group points (groups.c; the consistency stage
 * runs the rounds). A group point is a round whose every member's group
 * tag was processed: each member's point at its tag is marked multi-VM
 * (and app when the round quiesced applications), and the group keeps the
 * round with each member's position. It is whole while every member still
 * has that point; retention thins group points by the round's time so all
 * members keep the same rounds, and forgets a group point once any
 * member's point is gone.
 */
#define PTS_MAX_GROUP_MEMBERS 1024u
#define PTS_MAX_GROUP_NAME WIRE_MAX_NAME

typedef struct pts_group_def {
    const char *name;
    const char *const *members;
    size_t nmembers;
} pts_group_def_t;

/* Replace the groups the selectors know (copied; also while groups change:
 * latest-multivm-* then takes only group points that hold every member a
 * group has now, so all its members land on one round). 0 or -ENOMEM. */
int pts_set_groups(pts_t *p, const pts_group_def_t *groups, size_t n);
/* The group holding machine, into buf: 0, or TM_ENOTFOUND when in none. */
int pts_machine_group(pts_t *p, const char *machine, char *buf, size_t len);

typedef struct pts_group_member {
    char machine[WIRE_MAX_NAME + 1];
    uint64_t seq; /* its point: the stream position of its group tag */
} pts_group_member_t;

typedef struct pts_group_point {
    uint64_t round;  /* the round's id: its start time (ns); the members' tag id */
    pts_kind_t kind; /* crash, or app when every member quiesced */
    uint64_t time_ns; /* when the round committed */
    bool whole;       /* every member still has its point */
    size_t nmembers;
    pts_group_member_t *members;
} pts_group_point_t;

/*
 * Record round of group as a group point: every member's point at seq
 * must exist with tag id round (the processor cut it at the group tag).
 * Written durably. Errors: TM_ENOPOINT (a member's point is missing; why
 * names it), TM_ENOTFOUND (a member unknown), TM_EINVAL, -EIO.
 */
int pts_group_point_add(pts_t *p, const char *group, uint64_t round, pts_kind_t kind, uint64_t time_ns,
                        const pts_group_member_t *members, size_t n, char *why, size_t whylen);
/* The group's points, newest first, at most limit (0: all); free with
 * pts_group_points_free. 0, -ENOMEM, TM_ECORRUPT. */
int pts_group_points(pts_t *p, const char *group, size_t limit, pts_group_point_t **out, size_t *n);
void pts_group_points_free(pts_group_point_t *v, size_t n);

/* Parse RFC 3339 ("2026-11-27T10:00:00Z", fractions and +hh:mm offsets
 * allowed) into ns since the epoch. 0 or TM_EINVAL. */
int pts_parse_time(const char *s, uint64_t *ns);

#endif
