/* Settings for `tidemark serve`: defaults and the config file (see config.h). */
#include "cli/config.h"

#include <ctype.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/addr.h"
#include "base/err.h"
#include "points/points.h"
#include "wire/wire.h"
#include "base/mem.h"
#include "ingest/ingest.h"

/* Longest line accepted; a longer one is reported rather than split. */
#define CLI_CONFIG_LINE_MAX 4096

int cli_config_defaults(cli_config_t *cfg)
{
    cfg->data_dir = tm_strdup(CLI_DEFAULT_DATA);
    cfg->segment_size = 0;
    cfg->agents = tm_strdup(CLI_DEFAULT_AGENTS);
    cfg->ingest_window = 0;
    cfg->ingest_budget = 0;
    cfg->ingest_handshake_ms = 0;
    cfg->api = tm_strdup(CLI_DEFAULT_API);
    cfg->nbd = tm_strdup(CLI_DEFAULT_NBD);
    return cfg->data_dir && cfg->agents && cfg->api && cfg->nbd ? 0 : -ENOMEM;
}

int cli_config_set_nbd(cli_config_t *cfg, const char *addr)
{
    char *copy = tm_strdup(addr);
    if (!copy)
        return -ENOMEM;
    tm_free(cfg->nbd);
    cfg->nbd = copy;
    return 0;
}

int cli_config_set_api(cli_config_t *cfg, const char *addr)
{
    char *copy = tm_strdup(addr);
    if (!copy)
        return -ENOMEM;
    tm_free(cfg->api);
    cfg->api = copy;
    return 0;
}

int cli_config_set_agents(cli_config_t *cfg, const char *addr)
{
    char *copy = tm_strdup(addr);
    if (!copy)
        return -ENOMEM;
    tm_free(cfg->agents);
    cfg->agents = copy;
    return 0;
}

int cli_config_set_data(cli_config_t *cfg, const char *dir)
{
    char *copy = tm_strdup(dir);
    if (!copy)
        return -ENOMEM;
    tm_free(cfg->data_dir);
    cfg->data_dir = copy;
    return 0;
}

void cli_config_free(cli_config_t *cfg)
{
    tm_free(cfg->data_dir);
    cfg->data_dir = NULL;
    tm_free(cfg->agents);
    cfg->agents = NULL;
    tm_free(cfg->api);
    cfg->api = NULL;
    tm_free(cfg->nbd);
    cfg->nbd = NULL;
    for (size_t i = 0; i < cfg->nretention; i++)
        tm_free((char *)cfg->retention[i].machine);
    tm_free(cfg->retention);
    cfg->retention = NULL;
    cfg->nretention = cfg->retention_cap = 0;
    for (size_t i = 0; i < cfg->ntags_every; i++)
        tm_free((char *)cfg->tags_every[i].machine);
    tm_free(cfg->tags_every);
    cfg->tags_every = NULL;
    cfg->ntags_every = cfg->tags_every_cap = 0;
    cli_config_groups_free(cfg);
}

static void cli__fmt_size(uint64_t v, char *buf, size_t len)
{
    if (v && v % (1ull << 30) == 0)
        snprintf(buf, len, "%lluG", (unsigned long long)(v >> 30));
    else if (v && v % (1ull << 20) == 0)
        snprintf(buf, len, "%lluM", (unsigned long long)(v >> 20));
    else if (v && v % (1ull << 10) == 0)
        snprintf(buf, len, "%lluK", (unsigned long long)(v >> 10));
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

int cli_config_parse_bytes(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *out, char *err,
                           size_t errlen)
{
    char lim[32];
    uint64_t v = 0;
    const char *p = s;
    unsigned shift = 0;

    if (!isdigit((unsigned char)*p))
        goto out_not_bytes;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            goto out_too_big;
        v = v * 10 + d;
    }
    switch (toupper((unsigned char)*p)) {
    case 'K': shift = 10; p++; break;
    case 'M': shift = 20; p++; break;
    case 'G': shift = 30; p++; break;
    default: break;
    }
    if (*p != '\0')
        goto out_not_bytes;
    if (shift && v > (UINT64_MAX >> shift))
        goto out_too_big;
    v <<= shift;
    if (v < min) {
        cli__fmt_size(min, lim, sizeof lim);
        snprintf(err, errlen, "%s %s is below the minimum of %s", what, s, lim);
        return TM_EINVAL;
    }
    if (v > max)
        goto out_too_big;
    *out = v;
    return 0;

out_not_bytes:
    snprintf(err, errlen, "'%s' is not a byte count (a number, optionally followed by K, M or G)", s);
    return TM_EINVAL;
out_too_big:
    cli__fmt_size(max, lim, sizeof lim);
    snprintf(err, errlen, "%s %s is above the maximum of %s", what, s, lim);
    return TM_EINVAL;
}

int cli_config_parse_ms(const char *s, const char *what, uint32_t min_ms, uint32_t max_ms, uint32_t *out, char *err,
                        size_t errlen)
{
    uint64_t v = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        goto out_not_duration;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > max_ms)
            goto out_too_big; /* also keeps v far from overflowing */
    }
    if (strcmp(p, "s") == 0)
        v *= 1000;
    else if (*p != '\0' && strcmp(p, "ms") != 0)
        goto out_not_duration;
    if (v < min_ms) {
        snprintf(err, errlen, "%s %s is below the minimum of %u ms", what, s, min_ms);
        return TM_EINVAL;
    }
    if (v > max_ms)
        goto out_too_big;
    *out = (uint32_t)v;
    return 0;

out_not_duration:
    snprintf(err, errlen, "'%s' is not a duration (milliseconds, or a number followed by s or ms)", s);
    return TM_EINVAL;
out_too_big:
    snprintf(err, errlen, "%s %s is above the maximum of %u s", what, s, max_ms / 1000);
    return TM_EINVAL;
}

int cli_config_parse_window(const char *s, const char *what, uint64_t *out, char *err, size_t errlen)
{
    return cli_config_parse_duration(s, what, PTS_MIN_RETENTION_NS, PTS_MAX_RETENTION_NS, out, err, errlen);
}

/* "1m", "30d", ... for messages. */
static void cli__fmt_duration(uint64_t ns, char *buf, size_t len)
{
    uint64_t s = ns / 1000000000u;
    if (s % 86400 == 0)
        snprintf(buf, len, "%llud", (unsigned long long)(s / 86400));
    else if (s % 3600 == 0)
        snprintf(buf, len, "%lluh", (unsigned long long)(s / 3600));
    else if (s % 60 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(s / 60));
    else
        snprintf(buf, len, "%llus", (unsigned long long)s);
}

int cli_config_parse_duration(const char *s, const char *what, uint64_t min_ns, uint64_t max_ns, uint64_t *out,
                              char *err, size_t errlen)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        goto out_not_window;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 1000000000u)
            goto out_range;
    }
    uint64_t unit;
    if (strcmp(p, "m") == 0)
        unit = 60;
    else if (strcmp(p, "h") == 0)
        unit = 3600;
    else if (strcmp(p, "d") == 0)
        unit = 86400;
    else if (strcmp(p, "s") == 0 || *p == '\0')
        unit = 1;
    else
        goto out_not_window;
    v *= unit * 1000000000ull;
    if (v < min_ns || v > max_ns)
        goto out_range;
    *out = v;
    return 0;
out_not_window:
    snprintf(err, errlen, "'%s' is not a duration (a number followed by s, m, h or d)", s);
    return TM_EINVAL;
out_range:;
    char lo[24], hi[24];
    cli__fmt_duration(min_ns, lo, sizeof lo);
    cli__fmt_duration(max_ns, hi, sizeof hi);
    snprintf(err, errlen, "%s %s is outside %s to %s", what, s, lo, hi);
    return TM_EINVAL;
}

/* Set name's value in a per-machine list (points.retention.NAME, tags.every.NAME). */
static int cli__set_per_machine(pts_retention_t **v, size_t *n, size_t *cap, const char *name, uint64_t ns,
                                char *err, size_t errlen)
{
    if (!wire_name_ok(name)) {
        snprintf(err, errlen, "'%s' is not a machine name", name);
        return TM_EINVAL;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*v)[i].machine, name) == 0) {
            (*v)[i].window_ns = ns;
            return 0;
        }
    }
    if (*n == *cap && tm_grow((void **)v, cap, *n + 1, sizeof **v) != 0)
        return -ENOMEM;
    char *copy = tm_strdup(name);
    if (!copy)
        return -ENOMEM;
    (*v)[(*n)++] = (pts_retention_t){copy, ns};
    return 0;
}

/* "off" or a tags.every period. */
static int cli__parse_tags_every(const char *value, const char *what, uint64_t *out, char *err, size_t errlen)
{
    if (strcmp(value, "off") == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    return cli_config_parse_duration(value, what, CLI_MIN_TAGS_EVERY_NS, CLI_MAX_TAGS_EVERY_NS, out, err, errlen);
}

int cli_config_parse_segment_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p)) {
        snprintf(err, errlen, "'%s' is not a byte count (a number, optionally followed by K, M or G)", s);
        return TM_EINVAL;
    }
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            goto out_too_big;
        v = v * 10 + d;
    }

    unsigned shift = 0;
    switch (toupper((unsigned char)*p)) {
    case '\0':
        break;
    case 'K':
        shift = 10;
        p++;
        break;
    case 'M':
        shift = 20;
        p++;
        break;
    case 'G':
        shift = 30;
        p++;
        break;
    default:
        break;
    }
    if (*p != '\0') {
        snprintf(err, errlen, "'%s' is not a byte count (a number, optionally followed by K, M or G)", s);
        return TM_EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        goto out_too_big;
    v <<= shift;

    if (v < CLI_MIN_SEGMENT) {
        snprintf(err, errlen, "segment size %s is below the minimum of %u bytes (64K)", s,
                 (unsigned)CLI_MIN_SEGMENT);
        return TM_EINVAL;
    }
    if (v > CLI_MAX_SEGMENT)
        goto out_too_big;
    *out = v;
    return 0;

out_too_big:
    snprintf(err, errlen, "segment size %s is above the maximum of 1T", s);
    return TM_EINVAL;
}

static char *cli__trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A relative `data` is taken relative to the config file's folder, so the
 * file means the same thing whatever the working directory is. */
static int cli__set_data_relative(cli_config_t *cfg, const char *path, const char *value)
{
    const char *slash = strrchr(path, '/');
    if (value[0] == '/' || !slash)
        return cli_config_set_data(cfg, value);

    size_t dirlen = (size_t)(slash - path);
    size_t vlen = strlen(value);
    char *joined = tm_malloc(dirlen + 1 + vlen + 1);
    if (!joined)
        return -ENOMEM;
    memcpy(joined, path, dirlen);
    joined[dirlen] = '/';
    memcpy(joined + dirlen + 1, value, vlen + 1);
    tm_free(cfg->data_dir);
    cfg->data_dir = joined;
    return 0;
}

/* Apply one `key = value` line; on TM_EINVAL, why goes into err. */
static int cli__apply(cli_config_t *cfg, const char *path, const char *key, const char *value, char *err,
                      size_t errlen)
{
    if (strcmp(key, "data") == 0)
        return cli__set_data_relative(cfg, path, value);
    if (strcmp(key, "journal.segment_size") == 0)
        return cli_config_parse_segment_size(value, &cfg->segment_size, err, errlen);
    if (strcmp(key, "agents") == 0 || strcmp(key, "api") == 0 || strcmp(key, "nbd") == 0) {
        struct sockaddr_storage ss;
        if (tm_addr_parse(value, &ss) != 0) {
            snprintf(err, errlen, "'%s' is not an address (HOST:PORT or [V6]:PORT, numeric host)", value);
            return TM_EINVAL;
        }
        if (strcmp(key, "api") == 0)
            return cli_config_set_api(cfg, value);
        if (strcmp(key, "nbd") == 0)
            return cli_config_set_nbd(cfg, value);
        return cli_config_set_agents(cfg, value);
    }
    if (strcmp(key, "ingest.window") == 0)
        return cli_config_parse_bytes(value, "ingest.window", CLI_MIN_WINDOW, CLI_MAX_WINDOW, &cfg->ingest_window,
                                      err, errlen);
    if (strcmp(key, "ingest.budget") == 0)
        return cli_config_parse_bytes(value, "ingest.budget", CLI_MIN_BUDGET, CLI_MAX_BUDGET, &cfg->ingest_budget,
                                      err, errlen);
    if (strcmp(key, "ingest.handshake_timeout") == 0)
        return cli_config_parse_ms(value, "ingest.handshake_timeout", CLI_MIN_HANDSHAKE_MS, CLI_MAX_HANDSHAKE_MS,
                                   &cfg->ingest_handshake_ms, err, errlen);
    if (strcmp(key, "points.retention") == 0)
        return cli_config_parse_window(value, "points.retention", &cfg->retention_ns, err, errlen);
    if (strncmp(key, "points.retention.", 17) == 0) {
        uint64_t ns;
        int rc = cli_config_parse_window(value, "points.retention", &ns, err, errlen);
        return rc ? rc
                  : cli__set_per_machine(&cfg->retention, &cfg->nretention, &cfg->retention_cap, key + 17, ns, err,
                                         errlen);
    }
    if (strncmp(key, "tags.every.", 11) == 0) {
        uint64_t ns;
        int rc = cli__parse_tags_every(value, "tags.every", &ns, err, errlen);
        return rc ? rc
                  : cli__set_per_machine(&cfg->tags_every, &cfg->ntags_every, &cfg->tags_every_cap, key + 11, ns,
                                         err, errlen);
    }
    if (strcmp(key, "tags.every") == 0)
        return cli__parse_tags_every(value, "tags.every", &cfg->tags_every_ns, err, errlen);
    if (strcmp(key, "points.cadence") == 0)
        return cli_config_parse_ms(value, "points.cadence", PTS_MIN_CADENCE_MS, PTS_MAX_CADENCE_MS,
                                   &cfg->points_cadence_ms, err, errlen);
    int grc = cli_config_group_key(cfg, key, value, err, errlen);
    if (grc <= 0)
        return grc;
    snprintf(err, errlen,
             "unknown key '%.60s' (known: data, journal.segment_size, agents, api, nbd, ingest.*, points.cadence, "
             "points.retention[.MACHINE], tags.every[.MACHINE], group.G[.crash_every|.app_every|.hold|.app_hold])",
             key);
    return TM_EINVAL;
}

int cli_config_load(cli_config_t *cfg, const char *path, char *err, size_t errlen)
{
    char line[CLI_CONFIG_LINE_MAX];
    char why[256];
    unsigned lineno = 0;
    int rc = 0;

    FILE *f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        return rc;
    }

    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, CLI_CONFIG_LINE_MAX - 2);
            rc = TM_EINVAL;
            goto out_close;
        }

        char *s = cli__trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        /* A trailing comment needs a blank before `#`, so a `#` inside a
         * value (a path, say) is kept. */
        for (char *c = s + 1; *c; c++) {
            if (*c == '#' && isspace((unsigned char)c[-1])) {
                *c = '\0';
                break;
            }
        }

        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            rc = TM_EINVAL;
            goto out_close;
        }
        *eq = '\0';
        char *key = cli__trim(s);
        char *value = cli__trim(eq + 1);
        if (*key == '\0' || *value == '\0') {
            snprintf(err, errlen, "%s:%u: expected 'key = value'%s", path, lineno,
                     *key ? " (the value is empty)" : " (the key is empty)");
            rc = TM_EINVAL;
            goto out_close;
        }

        rc = cli__apply(cfg, path, key, value, why, sizeof why);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, tm_strerror(rc));
            goto out_close;
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            goto out_close;
        }
    }
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
    } else if ((rc = cli_config_groups_check(cfg, why, sizeof why)) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
    }

out_close:
    fclose(f);
    return rc;
}
