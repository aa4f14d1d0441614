/*
 * Watching a job of the appliance (GET /v1/jobs/{id}) until it succeeds,
 * fails or is cancelled: its progress (progress.h) and, for jobs in steps
 * (failover, change-point, commit), each machine's steps as they change,
 * one line each on stderr.
 *
 * Ctrl-C while watching stops the watching only: the job carries on in the
 * appliance, and the command says so (with the job's id) and exits 130.
 */
#ifndef TM_CLI_JOB_WATCH_H
#define TM_CLI_JOB_WATCH_H

#include <jansson.h>
#include <stdbool.h>

#include "cli/api_client.h"

/* json: progress as JSON lines on stdout, no step lines. cmd names the
 * command in messages. 0 with *final the last answer ({"job": ...}), or
 * an exit status (said why). */
int cli_job_watch(cli_api_t *api, const char *id, bool json, const char *cmd, json_t **final);

#endif
