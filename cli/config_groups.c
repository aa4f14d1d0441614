/* Replication groups in the configuration: the group.G keys (config.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "cli/config.h"
#include "consistency/consistency.h"
#include "wire/wire.h"

void cli_config_groups_free(cli_config_t *cfg)
{
    for (size_t g = 0; g < cfg->ngroups; g++) {
        for (size_t i = 0; i < cfg->groups[g].nmembers; i++)
            tm_free(cfg->groups[g].members[i]);
        tm_free(cfg->groups[g].members);
        tm_free(cfg->groups[g].name);
    }
    tm_free(cfg->groups);
    cfg->groups = NULL;
    cfg->ngroups = cfg->groups_cap = 0;
}

/* The group named name (len bytes), made when missing; NULL on ENOMEM. */
static cli_group_t *cli__group(cli_config_t *cfg, const char *name, size_t len)
{
    for (size_t g = 0; g < cfg->ngroups; g++)
        if (strlen(cfg->groups[g].name) == len && memcmp(cfg->groups[g].name, name, len) == 0)
            return &cfg->groups[g];
    if (cfg->ngroups == cfg->groups_cap &&
        tm_grow((void **)&cfg->groups, &cfg->groups_cap, cfg->ngroups + 1, sizeof *cfg->groups) != 0)
        return NULL;
    cli_group_t *g = &cfg->groups[cfg->ngroups];
    memset(g, 0, sizeof *g);
    if (!(g->name = tm_malloc(len + 1)))
        return NULL;
    memcpy(g->name, name, len);
    g->name[len] = '\0';
    cfg->ngroups++;
    return g;
}

/* "m1, m2, ..." into g's members (replacing them). */
static int cli__members(cli_group_t *g, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->nmembers; i++)
        tm_free(g->members[i]);
    tm_free(g->members);
    g->members = NULL;
    g->nmembers = 0;
    size_t cap = 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        char name[WIRE_MAX_NAME + 2];
        if (n > WIRE_MAX_NAME) {
            snprintf(err, errlen, "group %s: a member name is longer than %u characters", g->name, WIRE_MAX_NAME);
            return TM_EINVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        if (!wire_name_ok(name)) {
            snprintf(err, errlen, "group %s: '%s' is not a machine name", g->name, name);
            return TM_EINVAL;
        }
        for (size_t i = 0; i < g->nmembers; i++) {
            if (strcmp(g->members[i], name) == 0) {
                snprintf(err, errlen, "group %s: machine %s is named twice", g->name, name);
                return TM_EINVAL;
            }
        }
        if (g->nmembers >= PTS_MAX_GROUP_MEMBERS) {
            snprintf(err, errlen, "group %s: at most %u members", g->name, PTS_MAX_GROUP_MEMBERS);
            return TM_EINVAL;
        }
        if (g->nmembers == cap && tm_grow((void **)&g->members, &cap, g->nmembers + 1, sizeof *g->members) != 0)
            return -ENOMEM;
        if (!(g->members[g->nmembers] = tm_strdup(name)))
            return -ENOMEM;
        g->nmembers++;
    }
    return 0;
}

static int cli__every(const char *value, const char *what, uint64_t min_ns, uint64_t *out, char *err, size_t errlen)
{
    if (strcmp(value, "off") == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    return cli_config_parse_duration(value, what, min_ns, 30ull * 86400 * 1000000000ull, out, err, errlen);
}

int cli_config_group_key(cli_config_t *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    if (strncmp(key, "group.", 6) != 0)
        return 1;
    static const char *const suffixes[] = {".crash_every", ".app_every", ".hold", ".app_hold"};
    const char *name = key + 6;
    size_t len = strlen(name);
    int which = -1;
    for (int k = 0; k < 4 && which < 0; k++) {
        size_t sl = strlen(suffixes[k]);
        if (len > sl && strcmp(name + len - sl, suffixes[k]) == 0) {
            which = k;
            len -= sl;
        }
    }
    char gname[WIRE_MAX_NAME + 1];
    if (len == 0 || len > WIRE_MAX_NAME) {
        snprintf(err, errlen, "'%s': a group name is 1 to %u characters", key, WIRE_MAX_NAME);
        return TM_EINVAL;
    }
    memcpy(gname, name, len);
    gname[len] = '\0';
    if (!wire_name_ok(gname)) {
        snprintf(err, errlen, "'%s' is not a group name (A-Z a-z 0-9 . _ -, not starting with . or -)", gname);
        return TM_EINVAL;
    }
    cli_group_t *g = cli__group(cfg, gname, len);
    if (!g)
        return -ENOMEM;
    switch (which) {
    case 0:
        return cli__every(value, "group.G.crash_every", CNS_MIN_CRASH_EVERY_NS, &g->crash_every_ns, err, errlen);
    case 1:
        return cli__every(value, "group.G.app_every", 60ull * 1000000000ull, &g->app_every_ns, err, errlen);
    case 2:
        return cli_config_parse_ms(value, "group.G.hold", 1, CNS_MAX_HOLD_MS, &g->hold_ms, err, errlen);
    case 3:
        return cli_config_parse_ms(value, "group.G.app_hold", 1, CNS_MAX_HOLD_MS, &g->app_hold_ms, err, errlen);
    default:
        return cli__members(g, value, err, errlen);
    }
}

int cli_config_groups_check(const cli_config_t *cfg, char *err, size_t errlen)
{
    for (size_t g = 0; g < cfg->ngroups; g++) {
        const cli_group_t *a = &cfg->groups[g];
        if (a->nmembers == 0) {
            snprintf(err, errlen, "group %s has no members (group.%s = MACHINE, MACHINE...)", a->name, a->name);
            return TM_EINVAL;
        }
        for (size_t i = 0; i < a->nmembers; i++) {
            for (size_t h = g + 1; h < cfg->ngroups; h++) {
                const cli_group_t *b = &cfg->groups[h];
                for (size_t k = 0; k < b->nmembers; k++) {
                    if (strcmp(a->members[i], b->members[k]) == 0) {
                        snprintf(err, errlen, "machine %s is in two groups, %s and %s: a machine is in one at most",
                                 a->members[i], a->name, b->name);
                        return TM_EINVAL;
                    }
                }
            }
        }
    }
    return 0;
}
