/* DATA/groups.json: the groups made through the API (consistency.h,
 * docs/data-folder.md). Replaced whole on every change. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/file.h"
#include "base/mem.h"
#include "consistency/consistency.h"

#define CNS_STORE_MAX_BYTES (64u << 20)

int cns_store_load(const char *data_dir, json_t **defs, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, CNS_STORE_FILE) >= (int)sizeof path) {
        snprintf(err, errlen, "%s: %s", data_dir, tm_strerror(-ENAMETOOLONG));
        return -ENAMETOOLONG;
    }
    char *text;
    size_t len;
    int rc = tm_file_read(path, CNS_STORE_MAX_BYTES, &text, &len);
    if (rc == -ENOENT) {
        *defs = json_array();
        return 0;
    }
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        return rc;
    }
    rc = cns_store_parse(text, len, defs, err, errlen);
    tm_free(text);
    if (rc) {
        char why[400];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "%s: %s", path, why);
    }
    return rc;
}

int cns_store_parse(const char *text, size_t len, json_t **defs, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "line %d: not JSON: %s", je.line, je.text);
        return TM_ECORRUPT;
    }
    json_t *version = json_object_get(doc, "version"), *groups = json_object_get(doc, "groups");
    if (!json_is_integer(version) || !json_is_array(groups)) {
        snprintf(err, errlen, "not a groups file ({\"version\": %d, \"groups\": [...]})", CNS_STORE_VERSION);
        json_decref(doc);
        return TM_ECORRUPT;
    }
    if (json_integer_value(version) != CNS_STORE_VERSION) {
        snprintf(err, errlen, "version %lld; this build reads version %d", (long long)json_integer_value(version),
                 CNS_STORE_VERSION);
        json_decref(doc);
        return TM_EVERSION;
    }
    *defs = json_incref(groups);
    json_decref(doc);
    return 0;
}

int cns_store_save(const char *data_dir, json_t *defs, char *err, size_t errlen)
{
    json_t *doc = json_pack("{s:i,s:O}", "version", CNS_STORE_VERSION, "groups", defs);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t len = strlen(text);
    char *withnl = tm_malloc(len + 2);
    int rc = -ENOMEM;
    if (withnl) {
        memcpy(withnl, text, len);
        withnl[len] = '\n';
        rc = tm_file_replace(data_dir, CNS_STORE_FILE, withnl, len + 1, 0644);
        tm_free(withnl);
    }
    free(text);
    if (rc)
        snprintf(err, errlen, "%s/%s cannot be written: %s", data_dir, CNS_STORE_FILE, tm_strerror(rc));
    return rc;
}

json_t *cns_store_with(json_t *defs, const char *name, json_t *def)
{
    json_t *out = json_array();
    bool placed = false;
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d) {
        const char *dn = json_string_value(json_object_get(d, "name"));
        if (!dn || strcmp(dn, name) != 0) {
            json_array_append(out, d);
        } else if (def && !placed) {
            json_array_append(out, def);
            placed = true;
        }
    }
    if (def && !placed)
        json_array_append(out, def);
    return out;
}
