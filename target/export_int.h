/*
 * What export.c (life cycle, opens, listings) and export_read.c (reads and
 * their readers) share. Internal to the target stage.
 */
#ifndef TM_TARGET_EXPORT_INT_H
#define TM_TARGET_EXPORT_INT_H

#include <limits.h>
#include <stddef.h>
#include <pthread.h>
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
    /* A test failover's writable export (export_test.c): the overlay
     * over the point, and the test that made it. Such an export is not in
     * the exports list, is never shared with a read-only open, and holds no
     * pin of its own (its test holds one). NULL for the others. */
    struct tgt_test *test;
    tgt_ov_t *ov;
    bool dead; /* loop thread: the test was cleaned up; I/O is refused */
} tgt_export_t;

struct tgt_exports {
    uv_loop_t *loop;
    pts_t *pts;
    jnl_t *jnl;
    nbd_server_t *srv;
    tgt_workers_t *openers; /* opens and listings */
    tgt_workers_t *readers; /* reads */
    tgt_export_t *exports;  /* open ones */
    struct tgt_test *tests; /* test failovers starting or running, one per machine */
    struct sockaddr_storage addr;
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

/* Test failovers (export_test.c), on the loop. Open MACHINE/DISK@test
 * into op (0; nbd_open_done is the caller's) or fail with msg set. */
int tgt__test_open(tgt_exports_t *x, const char *machine, const char *disk, nbd_open_t *op, char *msg, size_t len);
/* The last release of a test export. */
void tgt__test_export_released(tgt_export_t *ex);
/* At stop, once nothing is open or in flight: clean every test up. */
void tgt__tests_drop_all(tgt_exports_t *x);

/* Close the readers an export kept; loop thread, once nothing reads. */
void tgt__export_drop_readers(tgt_export_t *ex);

#endif
