/*
 * Replay agents embedded in the test process (agent_replay_new): n
 * machines on one libuv loop of their own, on a thread, streaming to a
 * server; every call into them is made on that thread (arp_call), the
 * test waiting for the answer. For the tests that need many machines (a
 * group of 100) or an agent's own numbers (its group rounds' hold times),
 * which a child process would not give.
 */
#ifndef TM_TESTS_AGENT_ARP_H
#define TM_TESTS_AGENT_ARP_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "agent/client.h"
#include "agent/replay.h"

typedef struct arp arp_t;

typedef struct arp_opts {
    const char *server;          /* HOST:PORT */
    unsigned n;                  /* machines */
    const char *const *machines; /* n names */
    const uint8_t (*secrets)[AGENT_SECRET_LEN]; /* n secrets */
    const char *workload;        /* agent_workload_parse spec; seed= is added per machine (base + i) */
    uint64_t seed;               /* the base */
    const char *pre_script, *post_script;
} arp_opts_t;

arp_t *arp_start(const arp_opts_t *o);
/* Run fn(p, arg) on the agents' loop thread and return what it returns. */
int arp_call(arp_t *p, int (*fn)(arp_t *p, void *arg), void *arg);
/* On the loop thread only: the agents' loop (to add a handle of the test's). */
uv_loop_t *arp_loop(arp_t *p);
/* On the loop thread only: agent i's client. */
agent_client_t *arp_client(arp_t *p, unsigned i);
/* Agent i's stats and hold percentile (microseconds), from the loop. */
void arp_stats(arp_t *p, unsigned i, agent_client_stats_t *st);
uint64_t arp_hold_percentile(arp_t *p, unsigned i, double pct);
/* Agent i's remembered group rounds (agent_client_rounds), at most max. */
size_t arp_rounds(arp_t *p, unsigned i, agent_round_rec_t *out, size_t max);
/* Stop generating everywhere and wait (bounded) until every agent has
 * everything it generated acknowledged; false on timeout. */
bool arp_finish(arp_t *p, int timeout_ms);
/* Close every agent, end the loop and the thread, free p. */
void arp_stop(arp_t *p);

#endif
