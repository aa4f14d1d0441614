/* Failovers served again at start (serve_failover.h). */
#include "cli/serve_failover.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

typedef struct cli_fo_restore {
    char machine[WIRE_MAX_NAME + 1];
    uint64_t seq;
} cli_fo_restore_t;

static void cli__restored(void *arg, int status, uint64_t seq, const char *msg)
{
    cli_fo_restore_t *r = arg;
    if (status)
        tm_error("failover of %s: its disks cannot be served again: %s", r->machine, msg ? msg : tm_strerror(status));
    else if (seq)
        tm_log(TM_LOG_INFO, "failover of %s: disks served again as %s/DISK@failover at point %" PRIu64, r->machine,
               r->machine, seq);
    else
        tm_log(TM_LOG_INFO, "failover of %s (committed): disks served again as %s/DISK@failover", r->machine,
               r->machine);
    tm_free(r);
}

void cli_failovers_restore(tgt_exports_t *x, pts_t *pts, const char *data_dir)
{
    pts_machine_t *ms;
    size_t n;
    if (pts_machines(pts, &ms, &n) != 0) {
        tm_error("failovers cannot be served again: out of memory");
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/failover", data_dir);
    for (size_t i = 0; i < n; i++) {
        if (ms[i].failover == PTS_FO_NONE)
            continue;
        cli_fo_restore_t *r = tm_calloc(1, sizeof *r);
        if (!r)
            break;
        snprintf(r->machine, sizeof r->machine, "%s", ms[i].name);
        r->seq = ms[i].failover == PTS_FO_ACTIVE ? ms[i].failover_seq : 0;
        char err[512];
        int rc = tgt_failover_start(x, ms[i].name, r->seq, dir, true, cli__restored, r, err, sizeof err);
        if (rc) {
            tm_error("failover of %s: its disks cannot be served again: %s", ms[i].name, err);
            tm_free(r);
        }
    }
    tm_free(ms);
}
