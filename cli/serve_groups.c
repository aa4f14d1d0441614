/* The configuration's replication groups, started (serve_groups.h). */
#include "cli/serve_groups.h"

#include <errno.h>
#include <stdio.h>

#include "base/err.h"
#include "base/mem.h"
#include "ingest/registry.h"

int cli_groups_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cli_config_t *cfg, cns_t **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    ingest_registry_t reg = {0};
    if (cfg->ngroups && ingest_registry_load(cfg->data_dir, &reg, err, errlen) != 0)
        return TM_EINVAL;
    for (size_t g = 0; g < cfg->ngroups; g++) {
        const cli_group_t *grp = &cfg->groups[g];
        for (size_t i = 0; i < grp->nmembers; i++) {
            ingest_machine_info_t mi;
            if (ingest_machine_state(ig, grp->members[i], &mi) != 0 && !ingest_registry_find(&reg, grp->members[i])) {
                ingest_registry_free(&reg);
                snprintf(err, errlen,
                         "group %s: machine %s is not on this appliance (register it with `tidemark machine add "
                         "%s`; a group never spans two appliances)",
                         grp->name, grp->members[i], grp->members[i]);
                return TM_EINVAL;
            }
        }
    }
    ingest_registry_free(&reg);
    cns_group_cfg_t *gc = tm_calloc(cfg->ngroups ? cfg->ngroups : 1, sizeof *gc);
    if (!gc) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t g = 0; g < cfg->ngroups; g++) {
        const cli_group_t *grp = &cfg->groups[g];
        gc[g] = (cns_group_cfg_t){.name = grp->name, .members = (const char *const *)grp->members,
                                  .nmembers = grp->nmembers, .crash_every_ns = grp->crash_every_ns,
                                  .app_every_ns = grp->app_every_ns, .hold_ms = grp->hold_ms,
                                  .app_hold_ms = grp->app_hold_ms};
    }
    int rc = cns_start(loop, ig, pts, gc, cfg->ngroups, out, err, errlen);
    tm_free(gc);
    if (rc == 0 && cfg->ngroups)
        printf("tidemark: %zu replication group%s: multi-VM-consistent rounds on their cadence\n", cfg->ngroups,
               cfg->ngroups == 1 ? "" : "s");
    return rc;
}
