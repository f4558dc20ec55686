/*
 * test_http.c -- the embedded HTTP server (http.c) on 127.0.0.1, an
 * ephemeral port, through real HTTP/1.1 requests over a plain socket:
 * exact status lines, headers and bodies of /healthz, /readyz (flipping)
 * and /metrics (replaced between requests), 404, 405, HEAD, the metrics
 * cap, bind errors, IPv6, and no file descriptor left behind.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "http.h"

#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE "text/plain; charset=utf-8"

typedef struct {
    char *raw; /* the whole response, NUL-terminated */
    size_t len;
    const char *body;
    size_t body_len;
} resp_t;

static http_t *srv;

static void start(void) {
    char err[256];
    srv = http_start("127.0.0.1", 0, err, sizeof(err));
    cr_assert_not_null(srv, "%s", err);
    cr_assert_gt(http_port(srv), 0);
}

static void stop(void) { http_stop(srv); }

TestSuite(http, .init = start, .fini = stop);

/* Send raw on a new connection to family's loopback:port and read the response to EOF. */
static resp_t exchange(int family, int port, const char *raw) {
    int fd = socket(family, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a6.sin6_addr = in6addr_loopback;
    int rc = family == AF_INET ? connect(fd, (struct sockaddr *)&a4, sizeof(a4))
                               : connect(fd, (struct sockaddr *)&a6, sizeof(a6));
    cr_assert_eq(rc, 0);
    cr_assert_eq(send(fd, raw, strlen(raw), 0), (ssize_t)strlen(raw));
    resp_t r = {.raw = malloc(1 << 16)};
    size_t cap = 1 << 16;
    ssize_t n;
    while ((n = recv(fd, r.raw + r.len, cap - r.len - 1, 0)) > 0) {
        r.len += (size_t)n;
        if (cap - r.len < 4096) r.raw = realloc(r.raw, cap *= 2);
    }
    cr_assert_eq(n, 0, "the server did not close the connection");
    close(fd);
    r.raw[r.len] = '\0';
    const char *end = strstr(r.raw, "\r\n\r\n");
    cr_assert_not_null(end, "no end of headers in: %s", r.raw);
    r.body = end + 4;
    r.body_len = r.len - (size_t)(r.body - r.raw);
    return r;
}

static resp_t request(const char *method, const char *path) {
    char raw[512];
    snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    return exchange(AF_INET, http_port(srv), raw);
}

/* The status line, without CRLF. */
static const char *status(const resp_t *r) {
    static char line[128];
    size_t n = strcspn(r->raw, "\r");
    cr_assert_lt(n, sizeof(line));
    memcpy(line, r->raw, n);
    line[n] = '\0';
    return line;
}

/* A header's value ("" if absent), names compared exactly. */
static const char *header(const resp_t *r, const char *name) {
    static char value[256];
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *at = strstr(r->raw, key);
    value[0] = '\0';
    if (at && at < r->body) {
        at += strlen(key);
        size_t n = strcspn(at, "\r");
        cr_assert_lt(n, sizeof(value));
        memcpy(value, at, n);
        value[n] = '\0';
    }
    return value;
}

/* Assert the status line, Content-Type, Content-Length and body of GET path. */
static void expect(const char *path, const char *line, const char *ctype, const char *body) {
    resp_t r = request("GET", path);
    char len[32];
    snprintf(len, sizeof(len), "%zu", strlen(body));
    cr_assert_str_eq(status(&r), line, "GET %s", path);
    cr_assert_str_eq(header(&r, "Content-Type"), ctype, "GET %s", path);
    cr_assert_str_eq(header(&r, "Content-Length"), len, "GET %s", path);
    cr_assert_eq(r.body_len, strlen(body), "GET %s", path);
    cr_assert_str_eq(r.body, body, "GET %s", path);
    free(r.raw);
}

static void set_metrics(const char *text) {
    char err[256];
    cr_assert_eq(http_set_metrics(srv, text, strlen(text), err, sizeof(err)), 0, "%s", err);
}

Test(http, healthz) { expect("/healthz", "HTTP/1.1 200 OK", TEXT_TYPE, "ok\n"); }

Test(http, readyz_flips_with_its_reason) {
    expect("/readyz", "HTTP/1.1 503 Service Unavailable", TEXT_TYPE, "not ready: starting\n");
    http_set_ready(srv, 0, "redis: Connection refused");
    expect("/readyz", "HTTP/1.1 503 Service Unavailable", TEXT_TYPE, "not ready: redis: Connection refused\n");
    http_set_ready(srv, 1, "ignored when ready");
    expect("/readyz", "HTTP/1.1 200 OK", TEXT_TYPE, "ready\n");
    expect("/healthz", "HTTP/1.1 200 OK", TEXT_TYPE, "ok\n");
    http_set_ready(srv, 0, NULL);
    expect("/readyz", "HTTP/1.1 503 Service Unavailable", TEXT_TYPE, "not ready\n");
    char longer[400], want[300];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    http_set_ready(srv, 0, longer);
    snprintf(want, sizeof(want), "not ready: %.*s\n", HTTP_REASON_MAX - 1, longer);
    expect("/readyz", "HTTP/1.1 503 Service Unavailable", TEXT_TYPE, want);
}

Test(http, metrics_replaced_between_requests) {
    expect("/metrics", "HTTP/1.1 200 OK", PROM_TYPE, "");
    set_metrics("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n");
    expect("/metrics", "HTTP/1.1 200 OK", PROM_TYPE, "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n");
    set_metrics("# HELP g G.\n# TYPE g gauge\ng{x=\"y\"} 2.5\n");
    expect("/metrics", "HTTP/1.1 200 OK", PROM_TYPE, "# HELP g G.\n# TYPE g gauge\ng{x=\"y\"} 2.5\n");
    expect("/metrics?name[]=g", "HTTP/1.1 200 OK", PROM_TYPE, "# HELP g G.\n# TYPE g gauge\ng{x=\"y\"} 2.5\n");
    set_metrics("");
    expect("/metrics", "HTTP/1.1 200 OK", PROM_TYPE, "");
}

Test(http, head_has_the_headers_only) {
    set_metrics("g 1\n");
    resp_t r = request("HEAD", "/metrics");
    cr_assert_str_eq(status(&r), "HTTP/1.1 200 OK");
    cr_assert_str_eq(header(&r, "Content-Type"), PROM_TYPE);
    cr_assert_str_eq(header(&r, "Content-Length"), "4");
    cr_assert_eq(r.body_len, 0);
    free(r.raw);
    r = request("HEAD", "/readyz");
    cr_assert_str_eq(status(&r), "HTTP/1.1 503 Service Unavailable");
    cr_assert_eq(r.body_len, 0);
    free(r.raw);
}

Test(http, unknown_paths_404) {
    const char *paths[] = {"/", "/metricsx", "/metrics/", "/healthz/x", "/READYZ", "/index.html"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        expect(paths[i], "HTTP/1.1 404 Not Found", TEXT_TYPE, "not found\n");
}

Test(http, other_methods_405) {
    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        resp_t r = request(methods[i], "/metrics");
        cr_assert_str_eq(status(&r), "HTTP/1.1 405 Method Not Allowed", "%s", methods[i]);
        cr_assert_str_eq(header(&r, "Allow"), "GET, HEAD", "%s", methods[i]);
        cr_assert_str_eq(header(&r, "Content-Type"), TEXT_TYPE);
        cr_assert_str_eq(r.body, "method not allowed\n");
        free(r.raw);
    }
    /* with a body, too */
    resp_t r = exchange(AF_INET, http_port(srv),
                        "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
    cr_assert_str_eq(status(&r), "HTTP/1.1 405 Method Not Allowed");
    cr_assert_str_eq(r.body, "method not allowed\n");
    free(r.raw);
}

Test(http, big_metrics_whole_and_the_cap) {
    size_t n = 4u << 20;
    char *big = malloc(HTTP_METRICS_MAX + 1), err[256];
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    big[n - 1] = '\n';
    cr_assert_eq(http_set_metrics(srv, big, n, err, sizeof(err)), 0, "%s", err);
    resp_t r = request("GET", "/metrics");
    cr_assert_str_eq(status(&r), "HTTP/1.1 200 OK");
    cr_assert_eq(r.body_len, n);
    cr_assert_eq(memcmp(r.body, big, n), 0);
    free(r.raw);
    memset(big, 'x', HTTP_METRICS_MAX + 1);
    cr_assert_eq(http_set_metrics(srv, big, HTTP_METRICS_MAX + 1, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "http: 16777217 bytes of metrics, more than 16777216");
    cr_assert_eq(http_set_metrics(srv, big, HTTP_METRICS_MAX, err, sizeof(err)), 0, "%s", err);
    free(big);
}

Test(http, bind_errors_say_why) {
    char err[256], want[256];
    cr_assert_null(http_start("127.0.0.1", http_port(srv), err, sizeof(err)));
    snprintf(want, sizeof(want), "http: cannot bind 127.0.0.1:%d: Address already in use", http_port(srv));
    cr_assert_str_eq(err, want);
    cr_assert_null(http_start("localhost", 9464, err, sizeof(err)));
    cr_assert_str_eq(err, "http: cannot bind localhost:9464: not a numeric address");
    cr_assert_null(http_start("127.0.0.1", 65536, err, sizeof(err)));
    cr_assert_str_eq(err, "http: cannot bind 127.0.0.1:65536: bad port");
    cr_assert_null(http_start("127.0.0.1", -1, err, sizeof(err)));
    cr_assert_str_eq(err, "http: cannot bind 127.0.0.1:-1: bad port");
    cr_assert_null(http_start("192.0.2.1", 0, err, sizeof(err)));
    cr_assert_str_eq(err, "http: cannot bind 192.0.2.1:0: Cannot assign requested address");
    /* the server it collided with still serves */
    expect("/healthz", "HTTP/1.1 200 OK", TEXT_TYPE, "ok\n");
}

Test(http, ipv6_loopback) {
    char err[256];
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    int have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&a6, sizeof(a6)) == 0;
    if (probe >= 0) close(probe);
    if (!have_v6) cr_skip_test("no IPv6 loopback here");
    http_t *h6 = http_start("::1", 0, err, sizeof(err));
    cr_assert_not_null(h6, "%s", err);
    resp_t r = exchange(AF_INET6, http_port(h6), "GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n");
    cr_assert_str_eq(status(&r), "HTTP/1.1 200 OK");
    cr_assert_str_eq(r.body, "ok\n");
    free(r.raw);
    http_stop(h6);
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

Test(http, no_descriptor_left_behind) {
    char err[256];
    int before = open_fds();
    for (int i = 0; i < 3; i++) {
        http_t *h = http_start("127.0.0.1", 0, err, sizeof(err));
        cr_assert_not_null(h, "%s", err);
        http_stop(h);
        cr_assert_null(http_start("127.0.0.1", http_port(srv), err, sizeof(err)));
    }
    cr_assert_eq(open_fds(), before);
}
