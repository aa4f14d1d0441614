/*
 * What export.c (life cycle, opens, listings), export_read.c (reads and
 * their readers) and the sessions (export_session.c, export_test.c,
 * export_failover.c) share. Internal to the target stage.
 */
#ifndef TM_TARGET_EXPORT_INT_H
#define TM_TARGET_EXPORT_INT_H

#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nbd/nbd.h"
#include "target/export.h"
#include "target/overlay.h"
#include "target/reader.h"
#include "target/workers.h"
#include "wire/wire.h"

#define tgt__container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* A reader kept for the next read of its export. */
typedef struct tgt_slot {
    struct tgt_slot *next;
    tgt_reader_t *r;
    bool with_base; /* the replica base existed when the reader opened */
} tgt_slot_t;

/*
 * One disk at one point, shared by every connection that opened it (the
 * nbd export handle). The loop thread owns refs and the list link; the read
 * threads share the idle readers under mu.
 *
 * Why with_base matters: a reader opens the replica base once, at
 * tgt_open. If there was none then (nothing folded yet) and retention folds
 * data into a new base while the export is open (the pin allows folding up
 * to the point), such a reader would read zeros where the index no longer
 * has the folded writes. So readers opened without a base are replaced once
 * the base exists, and a read they made is redone when the base appeared
 * by its end.
 */
typedef struct tgt_export {
    tgt_exports_t *x;
    struct tgt_export *next;
    unsigned refs; /* successful opens not released; each holds one pin */
    char machine[WIRE_MAX_NAME + 1];
    char disk_name[WIRE_MAX_NAME + 1];
    uint32_t mid;
    uint16_t disk;
    uint64_t size;
    uint64_t seq; /* the point */
    char base_path[PATH_MAX];
    pthread_mutex_t mu;
    tgt_slot_t *idle; /* under mu */
    bool base_seen;   /* under mu: the base exists (it is never removed) */
    /* Each chunk's extents at seq, shared by the readers (chunks.h says
     * why a list stays right under retention while seq is pinned); NULL:
     * none (a cap of 0, short of memory, or the point let go by a commit).
     * Made with the export, freed with its readers. */
    tgt_chunks_t *chunks;
    /* A session's writable export (export_session.c: @test or
     * @failover): the overlay over the point, and the session that made
     * it. Such an export is not in the exports list, is never shared with
     * a read-only open, and holds no pin of its own (its session holds
     * one). NULL for the others. */
    struct tgt_session *session;
    tgt_ov_t *ov;
    bool dead; /* loop thread: the session ended; I/O is refused */
} tgt_export_t;

/*
 * A session: a machine's disks served writable over one overlay each, on
 * top of one point. Two kinds share everything but how they start, what
 * their overlays keep and how they end:
 *   - a test failover (export_test.c): MACHINE/DISK@test, overlays with
 *     their bitmap in memory, removed when it ends;
 *   - a failover (export_failover.c): MACHINE/DISK@failover, overlays with
 *     a stored bitmap, kept when it ends unless asked (change of point,
 *     cancel), reopened after a restart, made standalone by a commit.
 * At most one session of each kind per machine. The loop thread owns
 * every field but stop (read by the fill) and what the job's work fills
 * in before its done.
 */
typedef enum tgt_session_kind {
    TGT_SESSION_TEST,
    TGT_SESSION_FAILOVER,
} tgt_session_kind_t;

#define TGT_SESSION_SELECTOR 127u
#define TGT_SESSION_MSG 1024u

/* An open of a session's export that came while the session was starting:
 * answered when the start ends (tgt__session_started). */
typedef struct tgt_parked_open {
    struct tgt_parked_open *next;
    nbd_open_t *op;
    char disk[WIRE_MAX_NAME + 1];
} tgt_parked_open_t;

typedef struct tgt_session {
    tgt_job_t job; /* the start */
    tgt_exports_t *x;
    struct tgt_session *next; /* in x->sessions until freed, or until ended when nothing of it is kept */
    tgt_session_kind_t kind;
    char machine[WIRE_MAX_NAME + 1];
    char selector[TGT_SESSION_SELECTOR + 1]; /* a test's, as asked */
    char dir[PATH_MAX];                      /* dir/MACHINE: the overlays */
    bool keep;                               /* a failover reopening its overlays */
    tgt_test_cb cb;
    void *cb_arg;
    bool running; /* started; false while starting */
    tgt_parked_open_t *parked; /* opens waiting for the start, newest first */
    bool ended;   /* stopped: refuses opens, frees itself with its last export */
    bool pinned;
    uint32_t mid;
    uint64_t seq; /* the point; 0 once standalone */
    unsigned ndisks;
    tgt_export_t *ex[WIRE_MAX_DISKS];
    unsigned live; /* exports not freed yet */
    int rc;        /* the start's */
    char msg[TGT_SESSION_MSG];
    /* A failover's commit (export_failover.c): a job on the fill pool. */
    tgt_job_t commit;
    bool committing;
    tgt_test_cb commit_cb;
    void *commit_arg;
    atomic_bool stop; /* the fill stops at its next step */
    int commit_rc;
    char commit_msg[TGT_SESSION_MSG];
} tgt_session_t;

struct tgt_exports {
    uv_loop_t *loop;
    pts_t *pts;
    jnl_t *jnl;
    nbd_server_t *srv;
    tgt_workers_t *openers; /* opens and listings */
    tgt_workers_t *readers; /* reads */
    tgt_workers_t *fillers; /* commits: overlays made standalone */
    tgt_export_t *exports;  /* open ones */
    tgt_session_t *sessions; /* starting, running, or ended with files kept and exports left */
    struct sockaddr_storage addr;
    atomic_size_t chunk_cap;        /* of each new export's chunk cache */
    tgt_chunk_counters_t chunk_cnt; /* of them all */
    bool stopping;
    unsigned closing; /* worker pools not closed yet */
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

/* Fill a new export's fields (not its list link nor refs). */
void tgt__export_init(tgt_export_t *ex, tgt_exports_t *x, const char *machine, const char *disk_name, uint32_t mid,
                      uint16_t disk, uint64_t size, uint64_t seq);

/* The nbd backend's I/O and cancel (export_read.c): every kind goes to a
 * read thread; all but READ only for test exports. */
void tgt__export_io(nbd_io_t *io);
void tgt__export_cancel(nbd_io_t *io);

/* Rebuild [off, off + len) of ex at its point; on a read thread. */
int tgt__rebuild(tgt_export_t *ex, uint64_t off, uint8_t *buf, size_t len, char *err, size_t errlen);

/* ---- sessions (export_session.c), on the loop ---- */

/* "test failover" or "failover"; "test" or "failover" (the selector). */
const char *tgt__session_what(tgt_session_kind_t kind);
const char *tgt__session_suffix(tgt_session_kind_t kind);
/* The session of that kind and machine that is starting or running (not
 * ended), or NULL. */
tgt_session_t *tgt__session_find(const tgt_exports_t *x, tgt_session_kind_t kind, const char *machine);
/* A new session, starting (linked, its start job to submit), or NULL with
 * err and *rc: -ESHUTDOWN, TM_EINVAL, -EBUSY (one of that kind and machine
 * exists: err names it), -ENOMEM. */
tgt_session_t *tgt__session_new(tgt_exports_t *x, tgt_session_kind_t kind, const char *machine, const char *dir,
                                tgt_test_cb cb, void *arg, int *rc, char *err, size_t errlen);
/* On the start's thread: make dir/MACHINE (and dir) if missing. */
int tgt__session_mkdir(tgt_session_t *t);
/* On the start's thread: disk d's export, with the session's reference
 * (its overlay is the caller's to make; ex->ov NULL until then). */
tgt_export_t *tgt__session_add(tgt_session_t *t, unsigned d, const char *disk, uint32_t mid, uint64_t size,
                               uint64_t seq);
/* The overlay's base: the disk at the session's point (the export). */
int tgt__session_base(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
/* The start job's done: the callback, then running or undone. */
void tgt__session_started(tgt_job_t *job);
/* End a running session: I/O refused, connections closed, overlays removed
 * when remove (always for a test), the session's references dropped. */
void tgt__session_end(tgt_exports_t *x, tgt_session_t *t, bool remove);
/* Drop the session's references once nothing else holds them (a commit
 * in flight defers it to its done). */
void tgt__session_unref_all(tgt_session_t *t);
/* Open MACHINE/DISK@test or @failover into op (0; nbd_open_done is the
 * caller's) or fail with msg set. While the session is starting (a
 * failover just asked for, or served again after a restart) the open
 * waits for it: TGT_OPEN_PARKED, and nbd_open_done comes when the start
 * ends, so a client connecting a moment early is not turned away. */
#define TGT_OPEN_PARKED 1
int tgt__session_open(tgt_exports_t *x, tgt_session_kind_t kind, const char *machine, const char *disk,
                      nbd_open_t *op, char *msg, size_t len);
/* The last release of a session's export. */
void tgt__session_export_released(tgt_export_t *ex);
/* Name the running failovers' exports in a listing. */
int tgt__sessions_list(tgt_exports_t *x, nbd_list_t *op);
/* At stop, first: stop every fill. */
void tgt__sessions_stopping(tgt_exports_t *x);
/* At stop, once nothing is open or in flight: end every session (tests
 * removed, failovers kept and flushed). */
void tgt__sessions_drop_all(tgt_exports_t *x);

/* Close the readers an export kept, and free its chunk cache; loop
 * thread, once nothing reads. */
void tgt__export_drop_readers(tgt_export_t *ex);

#endif
