/*
 * main.c -- journeyd: parse the command line, load the configuration,
 * install the signal handlers and run the daemon loop (daemon.c).
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: journeyd -c FILE        run with the configuration FILE\n"
            "       journeyd --check-config FILE\n"
            "                               validate FILE, print the effective configuration\n"
            "                               (secrets as ***) and exit 0, or print file:line: reason\n"
            "                               and exit 1\n"
            "       journeyd -h | --help | --version\n"
            "signals: SIGTERM/SIGINT graceful shutdown, SIGHUP reload classification rules\n");
}

static void on_stop(int sig) {
    (void)sig;
    daemon_stop_requested = 1;
}

static void on_hup(int sig) {
    (void)sig;
    daemon_reload_requested = 1;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, o;
    char err[1024];
    while ((o = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'C': path = optarg; check = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("journeyd 0.1.0\n"); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        if (optind != argc) fprintf(stderr, "journeyd: unexpected argument '%s'\n", argv[optind]);
        else fprintf(stderr, "journeyd: no configuration file given\n");
        usage(stderr);
        return 2;
    }
    config_t *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check) {
        config_dump(cfg, stdout);
        fprintf(stderr, "%s: configuration OK\n", path);
        config_free(cfg);
        return 0;
    }
    log_set_level((log_level_t)cfg->log_level);
    install_signals();
    /* Every batch allocates and frees a few large buffers (the commit's
     * values, hiredis's output buffer). Served by mmap they would be zeroed
     * page by page on every batch (measured: a third of the main thread's
     * time in page faults); kept in the heap they are reused. Bounded by
     * processing.batch_max_events. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    int rc = daemon_run(cfg);
    config_free(cfg);
    return rc;
}
