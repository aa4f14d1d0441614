/* The replication groups of the configuration and of DATA/groups.json,
 * started (serve_groups.h). */
#include "cli/serve_groups.h"

#include <errno.h>
#include <stdio.h>

#include "base/err.h"
#include "base/mem.h"

/* Every member of def is a machine of this appliance; else err says which. */
static int cli__members_known(ingest_t *ig, const cns_group_cfg_t *def, const char *where, char *err,
                              size_t errlen)
{
    for (size_t i = 0; i < def->nmembers; i++) {
        if (!ingest_machine_known(ig, def->members[i])) {
            snprintf(err, errlen,
                     "%sgroup %s: machine %s is not on this appliance (register it with `tidemark machine add %s`; "
                     "a group never spans two appliances)",
                     where, def->name, def->members[i], def->members[i]);
            return TM_EINVAL;
        }
    }
    return 0;
}

int cli_groups_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cli_config_t *cfg, cns_t **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    json_t *stored;
    int rc = cns_store_load(cfg->data_dir, &stored, err, errlen);
    if (rc)
        return rc;
    size_t n = cfg->ngroups + json_array_size(stored);
    cns_group_cfg_t *gc = tm_calloc(n ? n : 1, sizeof *gc);
    if (!gc) {
        json_decref(stored);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t g = 0; g < cfg->ngroups && rc == 0; g++) {
        const cli_group_t *grp = &cfg->groups[g];
        gc[g] = (cns_group_cfg_t){.name = grp->name, .members = (const char *const *)grp->members,
                                  .nmembers = grp->nmembers, .crash_every_ns = grp->crash_every_ns,
                                  .app_every_ns = grp->app_every_ns, .hold_ms = grp->hold_ms,
                                  .app_hold_ms = grp->app_hold_ms, .configured = true};
        rc = cli__members_known(ig, &gc[g], "", err, errlen);
    }
    size_t parsed = 0;
    char where[80];
    snprintf(where, sizeof where, "%s: ", CNS_STORE_FILE);
    for (size_t i = 0; i < json_array_size(stored) && rc == 0; i++) {
        char why[400];
        rc = cns_def_parse(json_array_get(stored, i), &gc[cfg->ngroups + i], why, sizeof why);
        if (rc) {
            snprintf(err, errlen, "%s/%s: %s", cfg->data_dir, CNS_STORE_FILE, why);
            break;
        }
        parsed++;
        rc = cli__members_known(ig, &gc[cfg->ngroups + i], where, err, errlen);
    }
    if (rc == 0) {
        char why[400];
        rc = cns_start(loop, ig, pts, gc, n, out, why, sizeof why);
        if (rc)
            snprintf(err, errlen, "%s%s", json_array_size(stored) ? "the configuration with DATA/groups.json: " : "",
                     why);
    }
    for (size_t i = 0; i < parsed; i++)
        cns_def_free(&gc[cfg->ngroups + i]);
    tm_free(gc);
    json_decref(stored);
    if (rc == 0 && n)
        printf("tidemark: %zu replication group%s: multi-VM-consistent rounds on their cadence\n", n,
               n == 1 ? "" : "s");
    return rc;
}
