/* A group's definition in JSON, as the API takes it and the groups file
 * keeps it (consistency.h, cns_def_parse). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "consistency/consistency.h"
#include "wire/wire.h"

#define CNS_MAX_EVERY_S (30.0 * 86400.0)
#define CNS_MIN_APP_EVERY_S 60.0

static const char *const cns_def_keys[] = {"name", "members", "crash_every_seconds", "app_every_seconds",
                                           "hold_ms", "app_hold_ms"};

/* "…_every_seconds": absent 0 (the default), null UINT64_MAX (none on a
 * schedule), else seconds within [min, 30 days]. */
static int cns_every(json_t *o, const char *key, double min, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (json_is_null(v)) {
        *out = UINT64_MAX;
        return 0;
    }
    double s = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(s >= min && s <= CNS_MAX_EVERY_S)) {
        snprintf(err, errlen, "%s is a number of seconds from %.0f to %.0f (or null: none on a schedule)", key, min,
                 CNS_MAX_EVERY_S);
        return TM_EINVAL;
    }
    *out = (uint64_t)llround(s * 1e9);
    return 0;
}

static int cns_ms(json_t *o, const char *key, uint32_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > CNS_MAX_HOLD_MS) {
        snprintf(err, errlen, "%s is a whole number of milliseconds from 1 to %u", key, CNS_MAX_HOLD_MS);
        return TM_EINVAL;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

int cns_def_parse(json_t *o, cns_group_cfg_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a group is an object {\"name\", \"members\", ...}");
        return TM_EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        size_t k = 0;
        while (k < sizeof cns_def_keys / sizeof cns_def_keys[0] && strcmp(key, cns_def_keys[k]) != 0)
            k++;
        if (k == sizeof cns_def_keys / sizeof cns_def_keys[0]) {
            snprintf(err, errlen, "'%s' is not a field of a group (name, members, crash_every_seconds, "
                     "app_every_seconds, hold_ms, app_hold_ms)", key);
            return TM_EINVAL;
        }
    }
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || !wire_name_ok(json_string_value(name))) {
        snprintf(err, errlen, "name is a group name: 1 to %u of A-Z a-z 0-9 . _ -, not starting with . or -",
                 WIRE_MAX_NAME);
        return TM_EINVAL;
    }
    out->name = json_string_value(name);
    json_t *members = json_object_get(o, "members");
    size_t n = json_array_size(members);
    if (!json_is_array(members) || n == 0 || n > PTS_MAX_GROUP_MEMBERS) {
        snprintf(err, errlen, "group %s: members is a list of 1 to %u machine names", out->name,
                 PTS_MAX_GROUP_MEMBERS);
        return TM_EINVAL;
    }
    const char **names = tm_calloc(n, sizeof *names);
    if (!names) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(members, i);
        if (!json_is_string(m) || !wire_name_ok(json_string_value(m))) {
            snprintf(err, errlen, "group %s: member %zu is not a machine name", out->name, i + 1);
            tm_free(names);
            return TM_EINVAL;
        }
        names[i] = json_string_value(m);
    }
    out->members = names;
    out->nmembers = n;
    int rc;
    if ((rc = cns_every(o, "crash_every_seconds", (double)CNS_MIN_CRASH_EVERY_NS / 1e9, &out->crash_every_ns, err,
                        errlen)) != 0 ||
        (rc = cns_every(o, "app_every_seconds", CNS_MIN_APP_EVERY_S, &out->app_every_ns, err, errlen)) != 0 ||
        (rc = cns_ms(o, "hold_ms", &out->hold_ms, err, errlen)) != 0 ||
        (rc = cns_ms(o, "app_hold_ms", &out->app_hold_ms, err, errlen)) != 0) {
        cns_def_free(out);
        return rc;
    }
    return 0;
}

void cns_def_free(cns_group_cfg_t *d)
{
    tm_free((void *)d->members);
    d->members = NULL;
    d->nmembers = 0;
}

json_t *cns_def_json(const cns_group_cfg_t *d)
{
    json_t *members = json_array();
    for (size_t i = 0; i < d->nmembers; i++)
        json_array_append_new(members, json_string(d->members[i]));
    uint64_t crash = d->crash_every_ns ? d->crash_every_ns : CNS_DEFAULT_CRASH_EVERY_NS;
    uint64_t app = d->app_every_ns ? d->app_every_ns : CNS_DEFAULT_APP_EVERY_NS;
    return json_pack("{s:s,s:o,s:o,s:o,s:i,s:i}", "name", d->name, "members", members, "crash_every_seconds",
                     crash == UINT64_MAX ? json_null() : json_real((double)crash / 1e9), "app_every_seconds",
                     app == UINT64_MAX ? json_null() : json_real((double)app / 1e9), "hold_ms",
                     (int)(d->hold_ms ? d->hold_ms : CNS_DEFAULT_HOLD_MS), "app_hold_ms",
                     (int)(d->app_hold_ms ? d->app_hold_ms : CNS_DEFAULT_APP_HOLD_MS));
}
