/*
 * `tidemark serve` at start: the failovers the index records are served
 * again (api/failover.h): a failed-over machine's disks as
 * MACHINE/DISK@failover over their overlays at its point, a committed
 * machine's consolidated disks as they are.
 */
#ifndef TM_CLI_SERVE_FAILOVER_H
#define TM_CLI_SERVE_FAILOVER_H

#include "points/points.h"
#include "target/export.h"

/* On the loop's thread, once the exports run. Failures are logged: the
 * appliance serves everything else. */
void cli_failovers_restore(tgt_exports_t *x, pts_t *pts, const char *data_dir);

#endif
