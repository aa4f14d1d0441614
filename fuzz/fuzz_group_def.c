/*
 * Fuzz target: a replication group's definition (consistency/group_def.c)
 * as the API's POST and PATCH bodies bring it, and DATA/groups.json
 * (consistency/store.c, cns_store_parse), which a person may edit.
 *
 * Input: any bytes. They are read as a groups file; every definition in a
 * file that parses is checked, and the bytes are also read as one
 * definition. Besides "no crash, no read outside a buffer", what the
 * checker accepts is asserted to be what the coordinator relies on: a
 * valid group name, 1 to PTS_MAX_GROUP_MEMBERS valid machine names,
 * cadences 0 (default), UINT64_MAX (off) or within their bounds, holds 0
 * (default) or 1 ms to CNS_MAX_HOLD_MS.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/consistency.h"
#include "wire/wire.h"

static void check(json_t *o)
{
    cns_group_cfg_t d;
    char err[512];
    if (cns_def_parse(o, &d, err, sizeof err) != 0) {
        if (!err[0] || !memchr(err, '\0', sizeof err))
            abort(); /* a refusal always says why */
        return;
    }
    if (!wire_name_ok(d.name) || d.nmembers == 0 || d.nmembers > PTS_MAX_GROUP_MEMBERS)
        abort();
    for (size_t i = 0; i < d.nmembers; i++)
        if (!wire_name_ok(d.members[i]))
            abort();
    if (d.crash_every_ns && d.crash_every_ns != UINT64_MAX &&
        (d.crash_every_ns < CNS_MIN_CRASH_EVERY_NS || d.crash_every_ns > 30ull * 86400 * 1000000000ull))
        abort();
    if (d.app_every_ns && d.app_every_ns != UINT64_MAX &&
        (d.app_every_ns < 60ull * 1000000000ull || d.app_every_ns > 30ull * 86400 * 1000000000ull))
        abort();
    if (d.hold_ms > CNS_MAX_HOLD_MS || d.app_hold_ms > CNS_MAX_HOLD_MS)
        abort();
    cns_def_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *defs;
    char err[512];
    if (cns_store_parse((const char *)data, size, &defs, err, sizeof err) == 0) {
        size_t i;
        json_t *d;
        json_array_foreach(defs, i, d)
            check(d);
        json_decref(defs);
    }
    json_t *one = json_loadb((const char *)data, size, 0, NULL);
    if (one) {
        check(one);
        json_decref(one);
    }
    return 0;
}
