/*
 * The real `tidemark agent` against the real `tidemark serve`: every record
 * the replay agent generated is in the journal once, in order, with the
 * generator's content; killing either side mid-stream loses nothing and
 * repeats nothing; the agent says clearly when the server is unreachable or
 * refuses it. Ports are picked at run time; every wait is on an event with
 * a bound.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

#include "agent/replay.h"
#include "wire/msg.h"
#include "base/clock.h"
#include "tests/agent/at.h"

#define WAIT_MS 60000

TestSuite(agent_e2e, .init = at_setup, .fini = at_teardown, .timeout = 120);

static agent_workload_t parse(const char *spec)
{
    agent_workload_t w;
    char err[256];
    cr_assert_eq(agent_workload_parse(spec, &w, err, sizeof err), 0, "%s", err);
    return w;
}

static void start_replay(at_child_t *c, const char *addr, const char *spec, const char *secret)
{
    at_spawn(c, (const char *[]){"agent", "replay", "--server", addr, "--machine", "web1", "--secret-file", secret,
                                 "--workload", spec, NULL});
}

static void stop_server(at_child_t *srv)
{
    kill(srv->pid, SIGTERM);
    cr_assert_eq(at_finish(srv, WAIT_MS), 0, "serve:\n%s", srv->err);
}

Test(agent_e2e, replay_lands_in_the_journal_exactly)
{
    const char *data = at_path("data"), *secret = at_path("secret");
    const char *spec = "disks=2,size=64M,bs=4k:60,64k:30,512:10,locality=0.6,compress=0.5,count=3000,seed=11,"
                       "tags=40";
    char addr[64];
    at_child_t srv, ag;
    at_machine_add(data, "web1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    start_replay(&ag, addr, spec, secret);
    int code = at_finish(&ag, WAIT_MS);
    cr_assert_eq(code, 0, "agent:\n%s\n%s", ag.out, ag.err);
    cr_assert(strstr(ag.out, "acked up to sequence 3000, all acked"), "%s", ag.out);
    stop_server(&srv);
    agent_workload_t w = parse(spec);
    at_check_replay_journal(data, "web1", &w, 3000);
    at_child_free(&ag);
    at_child_free(&srv);
}

Test(agent_e2e, agent_killed_mid_stream_resumes_without_gap_or_duplicate)
{
    const char *data = at_path("data"), *secret = at_path("secret");
    const char *spec = "disks=1,size=256M,bs=16k,compress=0.3,count=1500,rate=6M,seed=5,tags=100";
    char addr[64];
    at_child_t srv, ag, ag2;
    at_machine_add(data, "web1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    start_replay(&ag, addr, spec, secret);
    cr_assert(at_wait(&ag, true, "replay: 20% acknowledged", WAIT_MS), "%s", ag.err);
    at_kill(&ag, SIGKILL);
    start_replay(&ag2, addr, spec, secret);
    int code = at_finish(&ag2, WAIT_MS);
    cr_assert_eq(code, 0, "agent:\n%s\n%s", ag2.out, ag2.err);
    cr_assert(strstr(ag2.out, "acked up to sequence 1500, all acked"), "%s", ag2.out);
    cr_assert_null(strstr(ag2.out, "from sequence 1,"), "the restarted agent resumed: %s", ag2.out);
    stop_server(&srv);
    agent_workload_t w = parse(spec);
    at_check_replay_journal(data, "web1", &w, 1500);
    at_child_free(&ag);
    at_child_free(&ag2);
    at_child_free(&srv);
}

Test(agent_e2e, server_killed_mid_stream_agent_reconnects_and_finishes)
{
    const char *data = at_path("data"), *secret = at_path("secret");
    const char *spec = "disks=2,size=256M,bs=16k:50,4k:50,compress=0.5,count=2000,rate=6M,seed=8";
    char addr[64], addr2[64];
    at_child_t srv, srv2, ag;
    at_machine_add(data, "web1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    start_replay(&ag, addr, spec, secret);
    cr_assert(at_wait(&ag, true, "replay: 20% acknowledged", WAIT_MS), "%s", ag.err);
    at_kill(&srv, SIGKILL);
    cr_assert(at_wait(&ag, true, "lost", WAIT_MS), "the agent noticed: %s", ag.err);
    at_serve(&srv2, data, addr, addr2);
    cr_assert_str_eq(addr, addr2);
    int code = at_finish(&ag, WAIT_MS);
    cr_assert_eq(code, 0, "agent:\n%s\n%s", ag.out, ag.err);
    cr_assert(strstr(ag.out, "acked up to sequence 2000, all acked"), "%s", ag.out);
    stop_server(&srv2);
    agent_workload_t w = parse(spec);
    at_check_replay_journal(data, "web1", &w, 2000);
    at_child_free(&ag);
    at_child_free(&srv);
    at_child_free(&srv2);
}

Test(agent_e2e, unreachable_server_is_said_with_backoff)
{
    const char *secret = at_path("secret");
    FILE *f = fopen(secret, "w");
    fprintf(f, "%064d\n", 0);
    fclose(f);
    /* A port nobody listens on: bound (so it is ours) but not listening. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char addr[64], want[160];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
    at_child_t ag;
    start_replay(&ag, addr, "count=10", secret);
    snprintf(want, sizeof want, "server %s unreachable (connection refused); retrying in 0.1 s", addr);
    cr_assert(at_wait(&ag, true, want, WAIT_MS), "%s", ag.err);
    snprintf(want, sizeof want, "server %s unreachable (connection refused); retrying in 0.2 s", addr);
    cr_assert(at_wait(&ag, true, want, WAIT_MS), "%s", ag.err);
    snprintf(want, sizeof want, "server %s unreachable (connection refused); retrying in 0.4 s", addr);
    cr_assert(at_wait(&ag, true, want, WAIT_MS), "%s", ag.err);
    at_kill(&ag, SIGKILL);
    close(fd);
    at_child_free(&ag);
}

Test(agent_e2e, wrong_secret_is_refused_clearly)
{
    const char *data = at_path("data"), *secret = at_path("secret"), *wrong = at_path("wrong");
    char addr[64];
    at_child_t srv, ag;
    at_machine_add(data, "web1", secret);
    FILE *f = fopen(wrong, "w");
    fprintf(f, "%064d\n", 7);
    fclose(f);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    start_replay(&ag, addr, "count=10", wrong);
    cr_assert(at_wait(&ag, true, "server refused this agent: auth: unknown machine or wrong secret", WAIT_MS),
              "%s", ag.err);
    at_kill(&ag, SIGKILL);
    stop_server(&srv);
    at_child_free(&ag);
    at_child_free(&srv);
}

Test(agent_e2e, bad_secret_file_is_a_usage_error)
{
    const char *secret = at_path("secret");
    FILE *f = fopen(secret, "w");
    fprintf(f, "not-hex\n");
    fclose(f);
    at_child_t ag;
    start_replay(&ag, "127.0.0.1:1", "count=10", secret);
    cr_assert_eq(at_finish(&ag, WAIT_MS), 2);
    cr_assert(strstr(ag.err, "expected 64 hex characters"), "%s", ag.err);
    at_child_free(&ag);
}

Test(agent_e2e, tap_streams_qemu_io_writes_and_flush_means_durable)
{
    const char *data = at_path("data"), *secret = at_path("secret"), *img = at_path("disk.img");
    char addr[64], url[128], disk_arg[PATH_MAX + 8];
    at_child_t srv, tap, q;
    FILE *f = fopen(img, "w");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 16 << 20), 0);
    fclose(f);
    at_machine_add(data, "vm1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    at_spawn(&tap, (const char *[]){"agent", "tap", "--server", addr, "--machine", "vm1", "--secret-file", secret,
                                    "--disk", disk_arg, "--listen", "127.0.0.1:0", NULL});
    cr_assert(at_wait(&tap, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", tap.err);
    const char *p = strstr(tap.out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, sizeof url, "nbd://127.0.0.1:%d/d0", atoi(p));
    /* The empty image's initial copy (nothing but its SYNCED) first, so the
     * journal holds exactly the client's writes after it. */
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    at_spawn(&q, (const char *[]){"qemu-io", "-f", "raw", url, "-c", "write -P 0xab 0 64k", "-c",
                                  "write -P 0xcd 1M 128k", "-c", "write -z 2M 64k", "-c", "write -P 0x11 4096 4k",
                                  "-c", "flush", NULL});
    cr_assert_eq(at_finish(&q, WAIT_MS), 0, "qemu-io:\n%s\n%s", q.out, q.err);
    /* The flush returned: everything is durable at the server, even if it
     * dies now. */
    at_kill(&srv, SIGKILL);
    at_kill(&tap, SIGKILL);
    const at_write_t want[] = {
        {WIRE_R_WRITE, 0, 64 << 10, 0xab},
        {WIRE_R_WRITE, 1 << 20, 128 << 10, 0xcd},
        {WIRE_R_ZERO, 2 << 20, 64 << 10, 0},
        {WIRE_R_WRITE, 4096, 4096, 0x11},
    };
    at_check_tap_journal(data, "vm1", want, 4);
    at_child_free(&q);
    at_child_free(&tap);
    at_child_free(&srv);
}
