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
} tgt_export_t;

struct tgt_exports {
    uv_loop_t *loop;
    pts_t *pts;
    jnl_t *jnl;
    nbd_server_t *srv;
    tgt_workers_t *openers; /* opens and listings */
    tgt_workers_t *readers; /* reads */
    tgt_export_t *exports;  /* open ones */
    struct sockaddr_storage addr;
    bool stopping;
    unsigned closing; /* worker pools not closed yet */
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

/* The nbd backend's read and cancel (export_read.c). */
void tgt__export_read(nbd_io_t *io);
void tgt__export_cancel(nbd_io_t *io);

/* Close the readers an export kept; loop thread, once nothing reads. */
void tgt__export_drop_readers(tgt_export_t *ex);

#endif
