/*
 * `tidemark serve`: the replication groups of the configuration (group.G
 * keys) handed to the consistency stage's coordinator.
 */
#ifndef TM_CLI_SERVE_GROUPS_H
#define TM_CLI_SERVE_GROUPS_H

#include <stddef.h>

#include <uv.h>

#include "cli/config.h"
#include "consistency/consistency.h"
#include "ingest/ingest.h"
#include "points/points.h"

/* Start the coordinator (with no group, it only answers the API). Every
 * member must be a machine of this appliance (registered, or known from
 * its data); otherwise err names the group and the machine. 0 or an error. */
int cli_groups_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cli_config_t *cfg, cns_t **out, char *err,
                     size_t errlen);

#endif
