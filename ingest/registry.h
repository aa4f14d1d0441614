/*
 * The machine registry: DATA/machines.conf, which machines may stream to
 * this appliance and the secret each agent proves it holds.
 *
 * Format: one `machine NAME SECRET_HEX` per line, SECRET_HEX being 64 hex
 * digits (32 random bytes); blank lines and lines starting with `#` are
 * ignored. The file is mode 0600 and is only ever replaced whole (write a
 * temporary file, fsync, rename, fsync the folder), so a reader sees the old
 * or the new content, never a mix.
 *
 * The HMAC key of the agent protocol is the 32 bytes, not the hex text; the
 * agent's secret file holds the hex text (`tidemark machine add` prints it).
 */
#ifndef TM_INGEST_REGISTRY_H
#define TM_INGEST_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wire/wire.h"

#define INGEST_REGISTRY_FILE "machines.conf"
#define INGEST_SECRET_LEN 32u
#define INGEST_SECRET_HEX (2u * INGEST_SECRET_LEN)

typedef struct ingest_reg_entry {
    char name[WIRE_MAX_NAME + 1];
    uint8_t secret[INGEST_SECRET_LEN];
} ingest_reg_entry_t;

typedef struct ingest_registry {
    ingest_reg_entry_t *v;
    size_t n, cap;
    struct timespec mtime; /* of the file read; zero when it was absent */
    long long size;
} ingest_registry_t;

/*
 * Read DATA/machines.conf into r (emptied first). A missing file is an empty
 * registry. 0, -errno, TM_EINVAL (bad content: err names the line), -ENOMEM.
 */
int ingest_registry_load(const char *data_dir, ingest_registry_t *r, char *err, size_t errlen);

/* True when the file's mtime or size differs from what r was loaded from. */
int ingest_registry_changed(const char *data_dir, const ingest_registry_t *r);

const ingest_reg_entry_t *ingest_registry_find(const ingest_registry_t *r, const char *name);

void ingest_registry_free(ingest_registry_t *r);

/*
 * Register a machine: validate the name, refuse a duplicate, make a secret
 * and replace the file atomically (a lock file keeps two adds apart).
 * secret_hex gets the 64 hex digits and a NUL. 0, TM_EINVAL (bad name),
 * -EEXIST (already registered), -errno; err says what happened.
 */
int ingest_registry_add(const char *data_dir, const char *name, char secret_hex[INGEST_SECRET_HEX + 1], char *err,
                        size_t errlen);

/* Hex helpers shared with the tests. dec: 0 or TM_EINVAL. */
void ingest_hex_encode(const uint8_t *p, size_t n, char *out);
int ingest_hex_decode(const char *hex, uint8_t *out, size_t n);

#endif
