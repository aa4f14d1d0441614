/*
 * Helpers for the agent's end-to-end tests: real `tidemark` children (serve,
 * machine add, agent) with their output on pipes, bounded waits for a line,
 * and a check of the server's journal against the replay generator.
 */
#ifndef TM_TESTS_AGENT_AT_H
#define TM_TESTS_AGENT_AT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/replay.h"
#include "wire/msg.h"

typedef struct at_child {
    pid_t pid; /* 0 once reaped */
    int status; /* the exit status at_finish returns, once reaped */
    int out_fd, err_fd;
    char *out, *err;
    size_t out_len, err_len;
} at_child_t;

extern char at_dir[];

void at_setup(void);
void at_teardown(void);
const char *at_path(const char *rel);

/* Start `tidemark` with args (NULL-terminated, no argv[0]); an external
 * program when args[0] starts with '/' or is "qemu-io". */
void at_spawn(at_child_t *c, const char *const *args);
/* The same with the child's stdin on a pipe whose writing end goes into
 * *in_fd (the caller closes it). */
void at_spawn_in(at_child_t *c, const char *const *args, int *in_fd);
/* Read until needle appears on stdout (err: stderr) or timeout_ms passes. */
bool at_wait(at_child_t *c, bool err, const char *needle, int timeout_ms);
/* Whether needle is in what the child wrote so far (reads what is there
 * now, waits for nothing). */
bool at_has(at_child_t *c, bool err, const char *needle);
/* Wait for the exit (killing after timeout_ms and failing); the exit code, or
 * 128 + signal. */
int at_finish(at_child_t *c, int timeout_ms);
/* Send sig and reap. */
void at_kill(at_child_t *c, int sig);
void at_child_free(at_child_t *c);

/* `tidemark machine add NAME --data DATA`; the secret into secret_path. */
void at_machine_add(const char *data, const char *name, const char *secret_path);
/* Start `tidemark serve --data DATA --agents addr`; the bound address into
 * out (64 bytes). */
void at_serve(at_child_t *c, const char *data, const char *addr, char *out);

/* Call fn for each record of machine's batches in the journal of data (the
 * server stopped), in stream order; e->data points at a write's raw bytes. */
typedef void (*at_rec_fn)(uint64_t seq, const wire_entry_t *e, void *arg);
void at_walk_journal(const char *data, const char *machine, at_rec_fn fn, void *arg);
/* The same for every machine at once, in journal order. */
typedef void (*at_mrec_fn)(const char *machine, uint64_t seq, const wire_entry_t *e, void *arg);
void at_walk_journal_all(const char *data, at_mrec_fn fn, void *arg);

/* Apply a write, zero or trim record of disk 0 to disk (size bytes), as the
 * appliance rebuilds a disk; other kinds change nothing. */
void at_apply(uint8_t *disk, uint64_t size, const wire_entry_t *e);

/* Check the journal: the batches of machine hold records first..last exactly
 * once each, in order, each equal to the generator's. */
void at_check_replay_journal(const char *data, const char *machine, const agent_workload_t *w, uint64_t last);

/* One write as it should be found in the journal. */
typedef struct at_write {
    uint8_t kind; /* WIRE_R_* */
    uint64_t offset;
    uint32_t length;
    uint8_t fill; /* every byte of a write */
} at_write_t;

/* The journal holds exactly these writes/zeroes/trims (flushes, SYNCED and RESYNC
 * records may be anywhere), in order, on disk 0 of machine. */
void at_check_tap_journal(const char *data, const char *machine, const at_write_t *want, unsigned n);

#endif
