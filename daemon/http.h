/*
 * http.h -- the embedded HTTP server (libmicrohttpd, its own thread):
 *
 *   GET /healthz   200 "ok\n"                       the process is alive
 *   GET /readyz    200 "ready\n", or 503 "not ready: <reason>\n"
 *   GET /metrics   200, the last text given, Content-Type
 *                  "text/plain; version=0.0.4; charset=utf-8"
 *   other paths    404; methods other than GET and HEAD: 405
 *
 * The server thread never touches daemon state: the main loop hands it
 * copies (http_set_metrics(), http_set_ready()), kept under a mutex. Until
 * then /readyz says "not ready: starting" and /metrics is empty.
 */
#ifndef JD_HTTP_H
#define JD_HTTP_H

#include <stddef.h>

#define HTTP_METRICS_MAX (16u << 20) /* bytes of metrics text */
#define HTTP_REASON_MAX 256          /* bytes of a readiness reason, NUL included */
#define HTTP_CONNECTIONS_MAX 32      /* concurrent connections */
#define HTTP_TIMEOUT_S 10            /* an idle connection is closed after it */

typedef struct http http_t;

/* Listen on bind_addr (a numeric IPv4 or IPv6 address) and port (0: an
 * ephemeral port, see http_port()) and serve from a thread of its own.
 * Caller owns the result (http_stop()). NULL and errbuf on failure, e.g.
 * "http: cannot bind 127.0.0.1:9464: Address already in use". */
http_t *http_start(const char *bind_addr, int port, char *errbuf, size_t errlen);
/* The port bound. */
int http_port(const http_t *h);
/* Serve a copy of text[0..len) at /metrics from now on. -1 and errbuf (the
 * previous text kept) if len exceeds HTTP_METRICS_MAX or memory runs out. */
int http_set_metrics(http_t *h, const char *text, size_t len, char *errbuf, size_t errlen);
/* Set readiness; when not ready, reason (copied, truncated) says why. */
void http_set_ready(http_t *h, int ready, const char *reason);
/* Stop serving (waits for the thread) and free h. NULL is fine. */
void http_stop(http_t *h);

#endif
