/*
 * App-consistent tags on a schedule (`tags.every`, default hourly): on the
 * serve loop, every connected machine whose newest app-consistent point (or
 * the last request made for it) is older than the period is asked for one,
 * as POST /v1/machines/{m}/tags would.
 */
#ifndef TM_CLI_SERVE_TAGS_H
#define TM_CLI_SERVE_TAGS_H

#include <stdint.h>
#include <uv.h>

#include "ingest/ingest.h"
#include "points/points.h"

typedef struct cli_tags cli_tags_t;

/* every_ns: the period (UINT64_MAX: off); per: machines' own periods (same
 * form; copied). 0 or -ENOMEM / a libuv error. */
int cli_tags_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, uint64_t every_ns, const pts_retention_t *per,
                   size_t nper, cli_tags_t **out);
/* Stop the timer; the object frees itself once it is closed. Safe on NULL. */
void cli_tags_stop(cli_tags_t *t);

#endif
