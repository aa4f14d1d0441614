/*
 * More helpers for the ingest suite, for the tests of limits and failures
 * (budget, window, handshake timeout, journal failure, replaced sessions):
 * the server's log lines read while it runs, ERROR frames with their text,
 * and batches of an exact raw size.
 */
#ifndef ITX_H
#define ITX_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/ingest/ita.h"

/* Read the child's stdout and stderr until needle is on stderr: true, or
 * false when both pipes ended or nothing came for ITA_WAIT_MS. */
bool itx_err_until(tc_child_t *c, const char *needle);

/* Write text to tc_path(name) and return that path (in a rotating buffer). */
const char *itx_conf(const char *name, const char *text);

/* Read frames (skipping ACKs) until ERROR; assert its code and that the
 * server closes after it; its text into e. */
void itx_expect_error(ita_agent_t *a, int code, wire_error_t *e);

/* A batch of writes to disk 0 (of disk_size bytes) carrying exactly raw
 * bytes of seeded incompressible data (raw: a multiple of 512, at most
 * WIRE_MAX_BATCH_DATA), in writes of at most 64 KiB. Returns the count. */
uint16_t itx_batch_raw(wire_buf_t *b, uint64_t first_seq, uint32_t raw, uint64_t disk_size, uint64_t seed);

/* True when the connection has nothing to read and is not closed. */
bool itx_quiet(ita_agent_t *a);

/* The local port of the agent's connection (the server names it as the peer). */
unsigned itx_local_port(const ita_agent_t *a);

#endif
