/*
 * http.c -- /healthz, /readyz and /metrics over libmicrohttpd (see http.h).
 *
 * The listening socket is made here (so a failed bind says why) and handed
 * to libmicrohttpd, which closes it in MHD_stop_daemon(); its polling thread
 * starts with every signal blocked, so signals reach the main thread. The
 * handler only reads what http_set_metrics() and http_set_ready() left
 * under the mutex and answers from a copy. Owns: the libmicrohttpd daemon,
 * the metrics text, the readiness reason.
 */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROM_TEXT "text/plain; version=0.0.4; charset=utf-8"

struct http {
    struct MHD_Daemon *mhd;
    int port;
    pthread_mutex_t mu; /* guards the fields below */
    char *metrics;      /* owned, not NUL-terminated; NULL: none yet */
    size_t metrics_len;
    int ready;
    char reason[HTTP_REASON_MAX];
};

/* libmicrohttpd's messages, as structured log records. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char buf[512];
    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    buf[strcspn(buf, "\n")] = '\0'; /* libmicrohttpd ends its messages with one */
    for (char *s = buf; *s; s++) /* keep the quoted value whole */
        if (*s == '"' || *s == '\\') *s = '\'';
    log_warn("http server", "error=\"%s\"", buf);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body, size_t len,
                             const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES) ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_str(struct MHD_Connection *c, unsigned status, const char *body) {
    return reply(c, status, body, strlen(body), TEXT_PLAIN);
}

static enum MHD_Result readyz(http_t *h, struct MHD_Connection *c) {
    char body[HTTP_REASON_MAX + 16];
    pthread_mutex_lock(&h->mu);
    int ready = h->ready;
    snprintf(body, sizeof(body), "not ready%s%s\n", h->reason[0] ? ": " : "", h->reason);
    pthread_mutex_unlock(&h->mu);
    return ready ? reply_str(c, MHD_HTTP_OK, "ready\n") : reply_str(c, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

static enum MHD_Result metrics(http_t *h, struct MHD_Connection *c) {
    pthread_mutex_lock(&h->mu);
    enum MHD_Result ok = reply(c, MHD_HTTP_OK, h->metrics ? h->metrics : "", h->metrics_len, PROM_TEXT);
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* Every request is answered at its first call (the headers): no body is
 * read, none is needed. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return reply_str(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (!strcmp(url, "/healthz")) return reply_str(c, MHD_HTTP_OK, "ok\n");
    if (!strcmp(url, "/readyz")) return readyz(cls, c);
    if (!strcmp(url, "/metrics")) return metrics(cls, c);
    return reply_str(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* A listening socket on addr:port; its fd and *bound (the port), or -1 and errbuf. */
static int listen_on(const char *addr, int port, int *bound, char *errbuf, size_t errlen) {
    const char *fmt = strchr(addr, ':') ? "http: cannot bind [%s]:%d: %s" : "http: cannot bind %s:%d: %s";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char service[16];
    int fd = -1, one = 1;
    if (port < 0 || port > 65535) {
        snprintf(errbuf, errlen, fmt, addr, port, "bad port");
        goto fail;
    }
    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(addr, service, &hints, &ai)) {
        snprintf(errbuf, errlen, fmt, addr, port, "not a numeric address");
        goto fail;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
        snprintf(errbuf, errlen, fmt, addr, port, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        snprintf(errbuf, errlen, fmt, addr, port, strerror(errno));
        goto fail;
    }
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0) close(fd);
    if (ai) freeaddrinfo(ai);
    return -1;
}

http_t *http_start(const char *bind_addr, int port, char *errbuf, size_t errlen) {
    http_t *h = calloc(1, sizeof(*h));
    int fd = -1;
    if (!h) {
        snprintf(errbuf, errlen, "http: out of memory");
        goto fail;
    }
    pthread_mutex_init(&h->mu, NULL);
    snprintf(h->reason, sizeof(h->reason), "starting");
    fd = listen_on(bind_addr, port, &h->port, errbuf, errlen);
    if (fd < 0) goto fail;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, h,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                              MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTIONS_MAX,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->mhd) {
        snprintf(errbuf, errlen, "http: cannot start the server on port %d (see the log)", h->port);
        goto fail; /* a failed start leaves fd to us */
    }
    return h;
fail:
    if (fd >= 0) close(fd);
    if (h) {
        pthread_mutex_destroy(&h->mu);
        free(h);
    }
    return NULL;
}

int http_port(const http_t *h) { return h->port; }

int http_set_metrics(http_t *h, const char *text, size_t len, char *errbuf, size_t errlen) {
    if (len > HTTP_METRICS_MAX) {
        snprintf(errbuf, errlen, "http: %zu bytes of metrics, more than %u", len, HTTP_METRICS_MAX);
        return -1;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        snprintf(errbuf, errlen, "http: out of memory for %zu bytes of metrics", len);
        return -1;
    }
    if (len) memcpy(copy, text, len);
    pthread_mutex_lock(&h->mu);
    char *old = h->metrics;
    h->metrics = copy;
    h->metrics_len = len;
    pthread_mutex_unlock(&h->mu);
    free(old);
    return 0;
}

void http_set_ready(http_t *h, int ready, const char *reason) {
    pthread_mutex_lock(&h->mu);
    h->ready = ready != 0;
    snprintf(h->reason, sizeof(h->reason), "%s", ready || !reason ? "" : reason);
    pthread_mutex_unlock(&h->mu);
}

void http_stop(http_t *h) {
    if (!h) return;
    MHD_stop_daemon(h->mhd);
    pthread_mutex_destroy(&h->mu);
    free(h->metrics);
    free(h);
}
