/*
 * `tidemark machine add NAME [--data DIR] [--config FILE]`
 *
 * Registers a protected machine in DATA/machines.conf and prints its agent
 * secret (64 hex digits) once on stdout, alone on its line, so that
 * `tidemark machine add web1 > web1.secret` makes the agent's secret file;
 * a hint for a person goes to stderr. A running server picks the machine up
 * at its first hello, without a restart. Exit 2 for a bad name or a machine
 * already registered.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "cli/cmd.h"
#include "cli/config.h"
#include "ingest/registry.h"

static void cli__machine_usage(FILE *out)
{
    fputs("usage: tidemark machine add NAME [--data DIR] [--config FILE]\n"
          "  register a protected machine and print its agent secret once on stdout\n"
          "  --data DIR     data folder (default " CLI_DEFAULT_DATA ")\n"
          "  --config FILE  settings file (its `data` key names the data folder)\n",
          out);
}

/* `--name VALUE` or `--name=VALUE`: 1 matched, 0 not this one, -1 no value. */
static int cli__machine_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return **value ? 1 : -1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc || argv[*i + 1][0] == '\0')
        return -1;
    *value = argv[++*i];
    return 1;
}

static int cli__machine_add(int argc, char **argv)
{
    const char *name = NULL, *data = NULL, *config = NULL;
    cli_config_t cfg = {0};
    char err[PATH_MAX + 256];
    char hex[INGEST_SECRET_HEX + 1];
    int status = CLI_EXIT_FAIL;

    for (int i = 1; i < argc; i++) {
        int m = cli__machine_opt(argc, argv, &i, "--data", &data);
        if (m == 0)
            m = cli__machine_opt(argc, argv, &i, "--config", &config);
        if (m < 0) {
            fprintf(stderr, "tidemark: machine add: %s needs a value\n", argv[i]);
            goto out_usage;
        }
        if (m > 0)
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "tidemark: machine add: unknown option '%s'\n", argv[i]);
            goto out_usage;
        }
        if (name) {
            fprintf(stderr, "tidemark: machine add: unexpected argument '%s'\n", argv[i]);
            goto out_usage;
        }
        name = argv[i];
    }
    if (!name) {
        fprintf(stderr, "tidemark: machine add: which machine? (a NAME is needed)\n");
        goto out_usage;
    }

    if (cli_config_defaults(&cfg) != 0) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
        goto out_free_cfg;
    }
    if (config) {
        int rc = cli_config_load(&cfg, config, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "tidemark: config: %s\n", err);
            status = rc == -ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
            goto out_free_cfg;
        }
    }
    if (data && cli_config_set_data(&cfg, data) != 0) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
        goto out_free_cfg;
    }
    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "tidemark: cannot create the data folder %s: %s\n", cfg.data_dir, strerror(errno));
        goto out_free_cfg;
    }

    int rc = ingest_registry_add(cfg.data_dir, name, hex, err, sizeof err);
    if (rc == TM_EINVAL || rc == -EEXIST) {
        fprintf(stderr, "tidemark: machine add: %s\n", err);
        status = CLI_EXIT_USAGE;
        goto out_free_cfg;
    }
    if (rc != 0) {
        fprintf(stderr, "tidemark: machine add: %s\n", err);
        goto out_free_cfg;
    }
    printf("%s\n", hex);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tidemark: machine add: could not write the secret to stdout: %s\n"
                        "tidemark: machine %s is registered; its secret is in %s/" INGEST_REGISTRY_FILE "\n",
                strerror(errno), name, cfg.data_dir);
        goto out_free_cfg;
    }
    fprintf(stderr,
            "tidemark: machine %s registered in %s/" INGEST_REGISTRY_FILE ".\n"
            "tidemark: the line on stdout is its agent secret, shown only this once: keep it in a file\n"
            "tidemark: readable only by the agent (--secret-file).\n",
            name, cfg.data_dir);
    status = CLI_EXIT_OK;

out_free_cfg:
    cli_config_free(&cfg);
    return status;
out_usage:
    cli__machine_usage(stderr);
    return CLI_EXIT_USAGE;
}

int cli_cmd_machine(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0)
        return cli__machine_add(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        cli__machine_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (argc >= 2)
        fprintf(stderr, "tidemark: machine: unknown subcommand '%s'\n", argv[1]);
    cli__machine_usage(stderr);
    return CLI_EXIT_USAGE;
}
