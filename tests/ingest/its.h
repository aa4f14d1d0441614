/*
 * The ingest server in the test process, for what `tidemark serve` does not
 * let a test do at a chosen moment yet (ask an agent for a tag, stop it,
 * resume it, retire its machine): a real journal in a scratch folder, the
 * server on 127.0.0.1:0, its loop on a thread of its own, and every call
 * into ingest made on that thread (ingest's functions belong to its loop)
 * through a uv_async, the test waiting for the answer.
 *
 * Used by the ingest suite and by the agent suite (tests/agent/test_stop.c),
 * so it needs nothing but Criterion, ingest and the journal.
 */
#ifndef ITS_H
#define ITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ingest.h"
#include "journal/journal.h"
#include "wire/wire.h"

typedef struct its its_t;

typedef struct its_opts {
    const char *const *retired; /* ingest_options_t.retired */
    size_t nretired;
    bool gated;                 /* the journal's syncs go through the gate below */
} its_opts_t;

/* Start on data (which holds machines.conf; the journal goes in
 * data/journal); o may be NULL. */
its_t *its_start(const char *data, const its_opts_t *o);
unsigned its_port(const its_t *s);
/* "127.0.0.1:PORT" in a static buffer. */
const char *its_addr(const its_t *s);

/* The gate (its_opts_t.gated; one per process): the journal's first
 * fdatasync after its_gate_arm() waits until its_gate_open(), so a batch is
 * written and not durable for as long as the test likes: nothing is
 * acknowledged meanwhile. its_gate_wait() returns once a sync waits. */
void its_gate_arm(void);
void its_gate_wait(void);
void its_gate_open(void);

/* Run fn(ig, arg) on the loop's thread and return what it returns. */
int its_call(its_t *s, int (*fn)(ingest_t *ig, void *arg), void *arg);

int its_request_tag(its_t *s, const char *machine, uint8_t kind, uint64_t id, const char *name);
int its_request_stop(its_t *s, const char *machine, uint64_t id, const char *name, const char *reason);
int its_request_resume(its_t *s, const char *machine);
int its_retire(its_t *s, const char *machine, const char *reason);
/* ingest_machine_state: 0 or TM_ENOTFOUND. */
int its_machine(its_t *s, const char *machine, ingest_machine_info_t *out);

/* ---- group rounds ----
 * Answers to ingest_group_prepare are kept in the process (they outlive
 * its_stop, which delivers the ones still owed), in the order they came. */
typedef struct its_answer {
    char machine[WIRE_MAX_NAME + 1];
    uint64_t round;
    int status;
    uint64_t seq;
    char reason[WIRE_MAX_TEXT + 1];
} its_answer_t;

/* The ingest_prepared_cb the helpers give ingest (arg is ignored): for a
 * test's own its_call functions that prepare many machines in one turn. */
void its_group_on_prepared(void *arg, const char *machine, uint64_t round, int status, uint64_t seq,
                           const char *reason);
int its_group_prepare(its_t *s, const char *machine, uint64_t round, uint8_t kind, uint32_t hold_ms,
                      const char *name);
int its_group_commit(its_t *s, const char *machine, uint64_t round);
int its_group_abort(its_t *s, const char *machine, uint64_t round);
/* Wait (bounded) for the answer to (machine, round); false on timeout. */
bool its_group_wait(const char *machine, uint64_t round, int timeout_ms, its_answer_t *out);
/* How many answers (machine, round) got so far (NULL machine: any), and
 * all answers so far. */
unsigned its_group_answers(const char *machine, uint64_t round);
unsigned its_group_all_answers(void);

/* Stop the server (ingest_stop, then the loop), close the journal, free s.
 * The journal can be read afterwards. */
void its_stop(its_t *s);

/* Register name in data/machines.conf; its 32 secret bytes into secret,
 * and, when hex is not NULL, as 64 hex characters and a NUL into hex. */
void its_add_machine(const char *data, const char *name, uint8_t secret[32], char *hex);

#endif
