/* The API token file (token.h). */
#include "api/token.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/file.h"

static int token_path(const char *data_dir, const char *suffix, char *out, size_t len, char *err, size_t errlen)
{
    int n = snprintf(out, len, "%s/%s%s", data_dir, TM_API_TOKEN_FILE, suffix);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "%s: the path of the token file is too long", data_dir);
        return -ENAMETOOLONG;
    }
    return 0;
}

int tm_api_token_read(const char *data_dir, char out[TM_API_TOKEN_HEX + 1], char *err, size_t errlen)
{
    char path[PATH_MAX];
    int rc = token_path(data_dir, "", path, sizeof path, err, errlen);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT)
            snprintf(err, errlen, "%s: no API token (the appliance makes it at its first start)", path);
        else
            snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        return rc;
    }
    struct stat st;
    char buf[TM_API_TOKEN_HEX + 2];
    ssize_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = TM_ECORRUPT;
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out_close;
    }
    if ((st.st_mode & 077) != 0) {
        rc = TM_EINVAL;
        snprintf(err, errlen, "%s: refused: mode %04o lets group or others read it; chmod 600 it (or remove it "
                 "to make a new token)", path, (unsigned)(st.st_mode & 07777));
        goto out_close;
    }
    /* One more byte than a token and its newline, to see a longer file. */
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        goto out_close;
    }
    bool ok = (n == TM_API_TOKEN_HEX || (n == TM_API_TOKEN_HEX + 1 && buf[TM_API_TOKEN_HEX] == '\n')) &&
              st.st_size == n;
    for (unsigned i = 0; ok && i < TM_API_TOKEN_HEX; i++)
        ok = (buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f');
    if (!ok) {
        rc = TM_ECORRUPT;
        snprintf(err, errlen, "%s: not an API token (64 lowercase hex digits and a newline expected); remove it "
                 "to make a new one", path);
        goto out_close;
    }
    memcpy(out, buf, TM_API_TOKEN_HEX);
    out[TM_API_TOKEN_HEX] = '\0';
    rc = 0;
out_close:
    close(fd);
    return rc;
}

/* A new token into DATA/api.token, atomically. */
static int token_create(const char *data_dir, char out[TM_API_TOKEN_HEX + 1], char *err, size_t errlen)
{
    char path[PATH_MAX];
    int rc = token_path(data_dir, "", path, sizeof path, err, errlen);
    if (rc)
        return rc;
    uint8_t raw[TM_API_TOKEN_BYTES];
    rc = tm_random_bytes(raw, sizeof raw);
    if (rc) {
        snprintf(err, errlen, "no random bytes for the API token: %s", tm_strerror(rc));
        return rc;
    }
    static const char digits[] = "0123456789abcdef";
    char text[TM_API_TOKEN_HEX + 1];
    for (unsigned i = 0; i < TM_API_TOKEN_BYTES; i++) {
        text[2 * i] = digits[raw[i] >> 4];
        text[2 * i + 1] = digits[raw[i] & 15];
    }
    text[TM_API_TOKEN_HEX] = '\n';

    /* mode 0600 whatever the umask, also over a leftover temporary file */
    rc = tm_file_replace(data_dir, TM_API_TOKEN_FILE, text, sizeof text, 0600);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        return rc;
    }
    memcpy(out, text, TM_API_TOKEN_HEX);
    out[TM_API_TOKEN_HEX] = '\0';
    return 0;
}

int tm_api_token_load_or_create(const char *data_dir, char out[TM_API_TOKEN_HEX + 1], char *err, size_t errlen)
{
    int rc = tm_api_token_read(data_dir, out, err, errlen);
    if (rc != -ENOENT)
        return rc;
    return token_create(data_dir, out, err, errlen);
}
