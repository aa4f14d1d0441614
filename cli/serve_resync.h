/*
 * `tidemark serve`'s block-sum provider for ingest's resync
 * (ingest_resync_provider_t): the sums of a disk as the appliance holds it
 * at the machine's latest processed sequence, read through the points
 * stage's index and target/'s reader on libuv's thread pool.
 */
#ifndef TM_CLI_SERVE_RESYNC_H
#define TM_CLI_SERVE_RESYNC_H

#include <uv.h>

#include "ingest/ingest.h"
#include "journal/journal.h"
#include "points/points.h"

/* How long a call waits for the points stage to process what is durable. */
#define CLI_RESYNC_SYNC_MS 120000
/* Disk bytes read at a time (a whole number of blocks: blocks are powers of
 * two up to WIRE_RESYNC_MAX_BLOCK). */
#define CLI_RESYNC_PIECE WIRE_RESYNC_MAX_BLOCK

/* The provider for ingest_options_t.resync: one per process (serve runs
 * once); valid as long as pts and jnl are open, which outlive ingest. */
const ingest_resync_provider_t *cli_resync_provider(uv_loop_t *loop, pts_t *pts, jnl_t *jnl);

/* Before pts_close: calls not started yet fail ("the appliance is
 * stopping"), and this waits (blocking, briefly: a call stops between
 * pieces) for the ones running, so none uses pts after. Their done still
 * reaches ingest through the loop. */
void cli_resync_stop(void);

#endif
