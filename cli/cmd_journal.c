/*
 * `tidemark journal dump DIR [-v|--verbose]`: print a journal's segment
 * headers (and records when verbose) without changing anything; stop at the
 * first bad segment or record with its position and reason. The decoding is
 * jnl_dump()'s, the same code recovery uses.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "cli/cmd.h"
#include "cli/config.h"
#include "journal/journal.h"

static void cli__journal_usage(FILE *out)
{
    fputs("usage: tidemark journal dump DIR [-v|--verbose]\n"
          "  DIR is the data folder (its journal/ folder is used) or the journal folder.\n",
          out);
}

static bool cli__is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cli__journal_dump(int argc, char **argv)
{
    const char *dir = NULL;
    bool verbose = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli__journal_usage(stdout);
            return CLI_EXIT_OK;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tidemark: journal dump: unknown option '%s'\n", a);
            cli__journal_usage(stderr);
            return CLI_EXIT_USAGE;
        } else if (dir) {
            fprintf(stderr, "tidemark: journal dump: one DIR only ('%s' and '%s')\n", dir, a);
            cli__journal_usage(stderr);
            return CLI_EXIT_USAGE;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        fprintf(stderr, "tidemark: journal dump: DIR is missing\n");
        cli__journal_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "tidemark: journal dump: %s: %s\n", dir, tm_strerror(-errno));
        return CLI_EXIT_FAIL;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tidemark: journal dump: %s: not a folder\n", dir);
        return CLI_EXIT_FAIL;
    }

    /* Accept the data folder as well as the journal folder: the data folder
     * is what users know (it is what `serve --data` took). */
    char jdir[PATH_MAX];
    int n = snprintf(jdir, sizeof jdir, "%s/%s", dir, CLI_JOURNAL_SUBDIR);
    if (n < 0 || (size_t)n >= sizeof jdir || !cli__is_dir(jdir))
        snprintf(jdir, sizeof jdir, "%s", dir);

    int rc = jnl_dump(jdir, stdout, verbose);
    fflush(stdout);
    if (rc != 0) {
        fprintf(stderr, "tidemark: journal dump of %s stopped: %s\n", jdir, tm_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_cmd_journal(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "tidemark: journal: a subcommand is missing\n");
        cli__journal_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "dump") == 0)
        return cli__journal_dump(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        cli__journal_usage(stdout);
        return CLI_EXIT_OK;
    }
    fprintf(stderr, "tidemark: journal: unknown subcommand '%s'\n", argv[1]);
    cli__journal_usage(stderr);
    return CLI_EXIT_USAGE;
}
