/*
 * Settings of `tidemark serve` (and of the client commands, which read its
 * data folder and API address from the same file): embedded defaults, then
 * a config file, then command-line flags; each later source overrides the
 * earlier ones.
 *
 * Config file format: one `key = value` per line; blank lines and lines whose
 * first non-blank character is `#` are ignored, and ` #` after a value starts
 * a comment. Keys:
 *   data                  the data folder; a relative path is taken relative
 *                         to the folder the config file is in
 *   journal.segment_size  bytes per journal segment; suffix K, M or G (powers
 *                         of 1024) allowed
 *   agents                where agents connect: HOST:PORT or [V6]:PORT
 *                         (default 127.0.0.1:7707; port 0 picks a free one)
 *   api                   the HTTP/JSON API (docs/api.md): where `tidemark
 *                         serve` answers and where the client commands
 *                         (status, points, materialize) connect; HOST:PORT
 *                         or [V6]:PORT (default 127.0.0.1:7780)
 *   ingest.window         raw bytes an agent may send ahead of its acks
 *                         (default 16M, at least 1M, at most 1G)
 *   ingest.budget         bytes queued in the journal, all agents together,
 *                         above which the server stops reading (default 256M,
 *                         at least 1M; under 16M every agent is throttled to
 *                         about one batch in flight: small values are for
 *                         tests)
 *   ingest.handshake_timeout
 *                         how long a new connection has to finish HELLO and
 *                         AUTH before it gets ERROR(protocol) and is closed:
 *                         milliseconds, or a number with s or ms (default
 *                         30s, at least 100ms, at most 3600s)
 *   points.retention      how long points are kept: a number followed by s, m,
 *                         h or d (default 24h, at least 1m, at most 30d);
 *                         older data is folded into the replica base
 *   points.retention.NAME machine NAME's own window, same form
 *   tags.every            how often each connected machine is asked for an
 *                         app-consistent tag (its agent quiesces): a number
 *                         followed by s, m, h or d (default 1h, 10s to 7d),
 *                         or off
 *   tags.every.NAME       machine NAME's own period, same form
 *   group.G               replication group G: its members, machine names
 *                         separated by commas (a machine in one group at most)
 *   group.G.crash_every   how often G makes a crash-consistent group point: a
 *                         number followed by s, m, h or d (default 10s, at
 *                         least 1s), or off
 *   group.G.app_every     how often an app-consistent one (default 1h), or off
 *   group.G.hold          the longest a crash round holds writes (default
 *                         100ms, 1ms to 60s); app rounds: group.G.app_hold
 *                         (default 10s)
 *   points.cadence        how often a crash-consistent point is cut while a
 *                         machine writes: milliseconds, or a number with s
 *                         or ms (default 1s, at least 100ms, at most 3600s)
 * An unknown key or a bad value is an error that names file:line.
 *
 *   nbd                   where disks at points are served over NBD, as
 *                         MACHINE/DISK@SELECTOR (default 127.0.0.1:10809)
 */
#ifndef TM_CLI_CONFIG_H
#define TM_CLI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "points/points.h"

#define CLI_DEFAULT_DATA "./tidemark-data"
#define CLI_DEFAULT_AGENTS "127.0.0.1:7707"
#define CLI_DEFAULT_API "127.0.0.1:7780"
#define CLI_DEFAULT_NBD "127.0.0.1:10809"
#define CLI_JOURNAL_SUBDIR "journal"
#define CLI_INDEX_SUBDIR "index"
#define CLI_DEFAULT_TAGS_EVERY_NS (3600ull * 1000000000ull)
#define CLI_MIN_TAGS_EVERY_NS (10ull * 1000000000ull)
#define CLI_MAX_TAGS_EVERY_NS (7ull * 86400 * 1000000000ull)
#define CLI_BASE_SUBDIR "base"

/* Bounds on journal.segment_size: the journal's own minimum, and 1 TiB
 * above which preallocating a segment only wastes space. */
#define CLI_MIN_SEGMENT JNL_MIN_SEGMENT
#define CLI_MAX_SEGMENT (1ull << 40)
/* Bounds on ingest.window (a u32 on the wire) and ingest.budget. */
#define CLI_MIN_WINDOW (1ull << 20)
#define CLI_MAX_WINDOW (1ull << 30)
#define CLI_MIN_BUDGET (1ull << 20)
#define CLI_MAX_BUDGET (1ull << 40)
/* Bounds on ingest.handshake_timeout, in ms. */
#define CLI_MIN_HANDSHAKE_MS 100u
#define CLI_MAX_HANDSHAKE_MS 3600000u

typedef struct cli_config {
    char *data_dir;        /* owned, tm_malloc'ed */
    uint64_t segment_size; /* 0 = the journal's default */
    char *agents;          /* owned: the ingest listen address */
    uint64_t ingest_window; /* 0 = ingest's default */
    uint64_t ingest_budget; /* 0 = ingest's default */
    uint32_t ingest_handshake_ms; /* 0 = ingest's default */
    uint32_t points_cadence_ms;   /* 0 = the points stage's default */
    uint64_t retention_ns;        /* 0 = the points stage's default */
    uint64_t tags_every_ns;       /* app-consistent tags asked for on a schedule; 0 = default, UINT64_MAX = off */
    pts_retention_t *tags_every;  /* per machine (the same name + duration pairs); names owned */
    size_t ntags_every, tags_every_cap;
    pts_retention_t *retention;   /* per machine; names owned */
    size_t nretention, retention_cap;
    char *api;             /* owned: the API address (listen or connect) */
    char *nbd;             /* owned: where disks at points are served over NBD */
    struct cli_group *groups; /* replication groups (config_groups.c) */
    size_t ngroups, groups_cap;
} cli_config_t;

/* A replication group of the configuration (group.G keys). */
typedef struct cli_group {
    char *name;
    char **members;
    size_t nmembers;
    uint64_t crash_every_ns; /* 0: default, UINT64_MAX: off */
    uint64_t app_every_ns;
    uint32_t hold_ms, app_hold_ms; /* 0: default */
} cli_group_t;

/* A group.* key: 0, TM_EINVAL (err says why), -ENOMEM; 1 when key is not one. */
int cli_config_group_key(cli_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);
/* After loading: every group has members, no machine is in two. 0 or TM_EINVAL. */
int cli_config_groups_check(const cli_config_t *cfg, char *err, size_t errlen);
void cli_config_groups_free(cli_config_t *cfg);

/* Fill in the embedded defaults. 0 or -ENOMEM. */
int cli_config_defaults(cli_config_t *cfg);

/*
 * Read the config file at path over *cfg. On a problem returns nonzero and
 * writes a one-line message naming path:line (or the path and the system
 * error) into err: -errno if the file cannot be read, TM_EINVAL for bad
 * content, -ENOMEM. *cfg keeps what was set before the bad line.
 */
int cli_config_load(cli_config_t *cfg, const char *path, char *err, size_t errlen);

/* Replace cfg->data_dir with a copy of dir. 0 or -ENOMEM. */
int cli_config_set_data(cli_config_t *cfg, const char *dir);

/* Parse a byte count with an optional K/M/G suffix (case-insensitive) and
 * check it against the segment bounds. 0 or TM_EINVAL; err gets why. */
int cli_config_parse_segment_size(const char *s, uint64_t *out, char *err, size_t errlen);

/* Replace cfg->agents with a copy of addr. 0 or -ENOMEM. */
int cli_config_set_agents(cli_config_t *cfg, const char *addr);

/* Parse a retention window: a number followed by s, m, h or d (no unit:
 * seconds), within the points stage's bounds. 0 or TM_EINVAL. */
int cli_config_parse_window(const char *s, const char *what, uint64_t *out, char *err, size_t errlen);
/* The same form within [min_ns, max_ns]. */
int cli_config_parse_duration(const char *s, const char *what, uint64_t min_ns, uint64_t max_ns, uint64_t *out,
                              char *err, size_t errlen);

/* Replace cfg->nbd with a copy of addr. 0 or -ENOMEM. */
int cli_config_set_nbd(cli_config_t *cfg, const char *addr);

/* Replace cfg->api with a copy of addr. 0 or -ENOMEM. */
int cli_config_set_api(cli_config_t *cfg, const char *addr);

/* Parse a byte count with an optional K/M/G suffix and check it against
 * [min, max]; what names the setting in messages. 0 or TM_EINVAL. */
int cli_config_parse_bytes(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *out, char *err,
                           size_t errlen);

/* Parse a duration: milliseconds, or a number followed by s or ms; check
 * it against [min_ms, max_ms]; what names the setting. 0 or TM_EINVAL. */
int cli_config_parse_ms(const char *s, const char *what, uint32_t min_ms, uint32_t max_ms, uint32_t *out, char *err,
                        size_t errlen);

void cli_config_free(cli_config_t *cfg);

#endif
