/*
 * The token file: made once with mode 0600, the same token at every start,
 * refused when others may read it or when it is not a token.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/token.h"
#include "base/err.h"
#include "support/tmt.h"

static char dir[PATH_MAX];
static char path[PATH_MAX + 32];

static void setup(void)
{
    tmt_mkdtemp(dir, "api-token");
    snprintf(path, sizeof path, "%s/%s", dir, TM_API_TOKEN_FILE);
}

static void teardown(void)
{
    tmt_rmtree(dir);
}

TestSuite(api_token, .init = setup, .fini = teardown, .timeout = 30);

static bool is_token(const char *t)
{
    if (strlen(t) != TM_API_TOKEN_HEX)
        return false;
    for (const char *p = t; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

Test(api_token, made_at_first_start_with_mode_0600_and_reused)
{
    char a[TM_API_TOKEN_HEX + 1], b[TM_API_TOKEN_HEX + 1], c[TM_API_TOKEN_HEX + 1], err[512];
    int rc = tm_api_token_read(dir, a, err, sizeof err);
    cr_assert_eq(rc, -ENOENT, "%s", err);
    cr_assert(strstr(err, "first start") != NULL, "%s", err);

    mode_t old = umask(0);
    rc = tm_api_token_load_or_create(dir, a, err, sizeof err);
    umask(old);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(is_token(a), "%s", a);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
    cr_assert_eq(st.st_size, TM_API_TOKEN_HEX + 1);
    cr_assert_eq(tmt_count_files(dir, TM_API_TOKEN_FILE), 1, "a temporary file was left");

    /* A restart reads the same token; so does the command line. */
    cr_assert_eq(tm_api_token_load_or_create(dir, b, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a, b);
    cr_assert_eq(tm_api_token_read(dir, c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a, c);

    /* Another folder, another token. */
    char dir2[PATH_MAX];
    tmt_mkdtemp(dir2, "api-token2");
    cr_assert_eq(tm_api_token_load_or_create(dir2, b, err, sizeof err), 0, "%s", err);
    cr_assert_str_neq(a, b);
    tmt_rmtree(dir2);
}

Test(api_token, refused_when_group_or_others_may_read)
{
    char t[TM_API_TOKEN_HEX + 1], err[512];
    cr_assert_eq(tm_api_token_load_or_create(dir, t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(chmod(path, 0644), 0);
    int rc = tm_api_token_load_or_create(dir, t, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL, "%s", tmt_errname(rc));
    cr_assert(strstr(err, path) != NULL && strstr(err, "0644") != NULL && strstr(err, "chmod 600") != NULL,
              "%s", err);
    rc = tm_api_token_read(dir, t, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL);
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(tm_api_token_read(dir, t, err, sizeof err), TM_EINVAL);
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(tm_api_token_read(dir, t, err, sizeof err), 0, "%s", err);
}

Test(api_token, refused_when_malformed)
{
    const char *bad[] = {"", "abc\n", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n",
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n",
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
        close(fd);
        char t[TM_API_TOKEN_HEX + 1], err[512];
        int rc = tm_api_token_load_or_create(dir, t, err, sizeof err);
        cr_assert_eq(rc, TM_ECORRUPT, "input %zu: %s", i, tmt_errname(rc));
        cr_assert(strstr(err, "not an API token") != NULL, "%s", err);
    }
    /* Without the newline is fine. */
    int fd = open(path, O_WRONLY | O_TRUNC);
    const char *good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    cr_assert_eq(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    close(fd);
    char t[TM_API_TOKEN_HEX + 1], err[512];
    cr_assert_eq(tm_api_token_read(dir, t, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(t, good);
}
