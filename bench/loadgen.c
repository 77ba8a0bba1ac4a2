/*
 * loadgen: a small HTTP/1.1 load generator for the figures wrk cannot give,
 * because they need the time of every single request.
 *
 *   loadgen closed HOST PORT PATH CONNECTIONS SECONDS OUTFILE
 *       CONNECTIONS keep-alive connections, each sending its next request as
 *       soon as the previous answer is complete, for SECONDS.  A connection
 *       that the server closes is opened again, and the time to reconnect
 *       counts in the latency of the next request (the client waits for it).
 *
 *   loadgen burst HOST PORT PATH N TIMEOUT OUTFILE
 *       opens N connections, and once all are established sends one request
 *       on each, back to back; waits for all N answers (at most TIMEOUT s).
 *
 * OUTFILE gets one line per request: "start_us end_us status" (wall clock,
 * CLOCK_REALTIME, microseconds, so it compares with nginx's $msec); status 0
 * is a connection error, -1 a request whose client hung up.  A summary
 * line goes to stdout.
 *
 * A PATH with "%d" in it (once, and no other "%"): connection i (from 1)
 * sends PATH with i in place of "%d", e.g. "/?key=k%d": in a burst, one
 * request for each of N tenants.
 *
 * LOADGEN_HANGUP_PCT=N (closed mode): the client of every (100 / N)-th
 * request hangs up as soon as the request is sent, without reading the
 * answer, and the connection is opened again: N % of the requests end
 * with nginx finding their client gone.
 *
 * Every run is bounded in time; nothing here retries without bound.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define BUF_SIZE  65536


typedef struct {
    int        fd;
    int        connecting;
    int        busy;              /* a request is outstanding */
    int        done;              /* burst: answered (or failed) */
    size_t     sent;
    size_t     len;
    long long  start_us;
    char      *req;               /* its request: "request" or its own */
    size_t     req_len;
    char       buf[BUF_SIZE];
} conn_t;


typedef struct {
    long long  start_us;
    long long  end_us;
    int        status;
} sample_t;


static struct sockaddr_in  addr;
static char                request[1024];
static size_t              request_len;
static const char         *path_fmt;      /* with "%d", else NULL */
static const char         *host;
static int                 ep;

static sample_t           *samples;
static size_t              nsamples, samples_size;
static long long           reconnects, errors, hangups;
static long long           hangup_every, sent_count;


static long long
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static void
record(long long start, long long end, int status)
{
    if (nsamples == samples_size) {
        samples_size = samples_size ? samples_size * 2 : 65536;
        samples = realloc(samples, samples_size * sizeof(sample_t));
        if (samples == NULL) {
            perror("realloc");
            exit(2);
        }
    }

    samples[nsamples].start_us = start;
    samples[nsamples].end_us = end;
    samples[nsamples].status = status;
    nsamples++;

    if (status == 0) {
        errors++;
    }
}


static int
conn_open(conn_t *c, int idx)
{
    int                 fd, one;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        perror("socket");
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    c->fd = fd;
    c->connecting = 1;
    c->sent = 0;
    c->len = 0;

    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = (unsigned) idx;

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        perror("epoll_ctl");
        exit(2);
    }

    return 0;
}


static void
conn_close(conn_t *c)
{
    if (c->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}


/* the request on c is sent: its client leaves now, if it is its turn */

static int
hang_up(conn_t *c, int idx)
{
    if (hangup_every == 0 || ++sent_count % hangup_every != 0) {
        return 0;
    }

    record(c->start_us, now_us(), -1);
    hangups++;

    conn_close(c);
    c->start_us = now_us();

    if (conn_open(c, idx) != 0) {
        fprintf(stderr, "loadgen: cannot reconnect\n");
        exit(2);
    }

    return 1;
}


/* 1: a complete answer is in the buffer; *status and *keepalive set */

static int
response_complete(conn_t *c, int *status, int *keepalive)
{
    char    *end, *p, *line, *eol;
    size_t   hlen, clen;
    int      chunked, have_clen;

    c->buf[c->len] = '\0';

    end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL) {
        return 0;
    }

    hlen = (size_t) (end - c->buf) + 4;

    if (strncmp(c->buf, "HTTP/1.", 7) != 0 || c->len < 12) {
        *status = 0;
        *keepalive = 0;
        return 1;
    }

    *status = atoi(c->buf + 9);
    *keepalive = (c->buf[7] == '1');
    chunked = 0;
    have_clen = 0;
    clen = 0;

    for (line = strstr(c->buf, "\r\n") + 2; line < end; line = eol + 2) {
        eol = strstr(line, "\r\n");

        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            clen = strtoul(line + 15, NULL, 10);
            have_clen = 1;

        } else if (strncasecmp(line, "Connection:", 11) == 0) {
            for (p = line + 11; *p == ' '; p++) { /* void */ }
            if (strncasecmp(p, "close", 5) == 0) {
                *keepalive = 0;
            }

        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            chunked = (strstr(line, "chunked") != NULL && strstr(line, "chunked") < eol);
        }
    }

    if (chunked) {
        return c->len >= hlen + 5
               && memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0;
    }

    if (!have_clen) {
        /* the body ends with the connection */
        *keepalive = 0;
        return 0;
    }

    return c->len >= hlen + clen;
}


/* returns -1 on error, 1 when the request is fully written */

static int
conn_send(conn_t *c)
{
    ssize_t  n;

    while (c->sent < c->req_len) {
        n = write(c->fd, c->req + c->sent, c->req_len - c->sent);

        if (n == -1) {
            if (errno == EAGAIN) {
                return 0;
            }
            return -1;
        }

        c->sent += (size_t) n;
    }

    return 1;
}


/* returns -1 on error or close, 0 when more is needed, 1 when complete */

static int
conn_read(conn_t *c, int *status, int *keepalive)
{
    ssize_t  n;

    for ( ;; ) {
        if (c->len >= BUF_SIZE - 1) {
            return -1;
        }

        n = read(c->fd, c->buf + c->len, BUF_SIZE - 1 - c->len);

        if (n == 0) {
            /* a body delimited by the end of the connection */
            if (c->len && strstr(c->buf, "\r\n\r\n")) {
                *status = atoi(c->buf + 9);
                *keepalive = 0;
                return 1;
            }
            return -1;
        }

        if (n == -1) {
            if (errno == EAGAIN) {
                break;
            }
            return -1;
        }

        c->len += (size_t) n;
    }

    return response_complete(c, status, keepalive);
}


/* the request of connection idx: its own when the path has "%d" */

static void
conn_request(conn_t *c, int idx)
{
    char  path[512];
    int   n;

    if (path_fmt == NULL) {
        c->req = request;
        c->req_len = request_len;
        return;
    }

    snprintf(path, sizeof(path), path_fmt, idx + 1);

    c->req = malloc(1024);
    if (c->req == NULL) {
        perror("malloc");
        exit(2);
    }

    n = snprintf(c->req, 1024, "GET %s HTTP/1.1\r\nHost: %s\r\n"
                 "User-Agent: imburse-bench-loadgen\r\n\r\n", path, host);
    if (n < 0 || n >= 1024) {
        fprintf(stderr, "loadgen: path too long\n");
        exit(2);
    }

    c->req_len = (size_t) n;
}


static int
cmp_ll(const void *a, const void *b)
{
    long long  x = *(const long long *) a, y = *(const long long *) b;

    return (x > y) - (x < y);
}


static void
summary(const char *mode, long long t0, long long t1)
{
    size_t      i, n;
    long long  *lat;
    double      secs;

    lat = malloc((nsamples + 1) * sizeof(long long));
    n = 0;

    for (i = 0; i < nsamples; i++) {
        if (samples[i].status > 0) {
            lat[n++] = samples[i].end_us - samples[i].start_us;
        }
    }

    qsort(lat, n, sizeof(long long), cmp_ll);

    secs = (double) (t1 - t0) / 1e6;

    printf("%s requests=%zu errors=%lld reconnects=%lld hangups=%lld "
           "seconds=%.3f rps=%.1f p50_us=%lld p99_us=%lld max_us=%lld\n",
           mode, nsamples, errors, reconnects, hangups, secs,
           secs > 0 ? (double) nsamples / secs : 0.0,
           n ? lat[n / 2] : 0LL, n ? lat[(size_t) ((double) n * 0.99)] : 0LL,
           n ? lat[n - 1] : 0LL);

    free(lat);
}


static void
write_samples(const char *file)
{
    size_t  i;
    FILE   *f;

    f = fopen(file, "w");
    if (f == NULL) {
        perror(file);
        exit(2);
    }

    for (i = 0; i < nsamples; i++) {
        fprintf(f, "%lld %lld %d\n", samples[i].start_us, samples[i].end_us,
                samples[i].status);
    }

    fclose(f);
}


static void
closed_loop(int nconns, double seconds)
{
    int                 i, n, status, keepalive, rc, err;
    conn_t             *conns, *c;
    socklen_t           len;
    long long           t0, deadline, now;
    struct epoll_event  events[512];

    conns = calloc((size_t) nconns, sizeof(conn_t));

    t0 = now_us();
    deadline = t0 + (long long) (seconds * 1e6);

    for (i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conn_request(&conns[i], i);
        if (conn_open(&conns[i], i) != 0) {
            fprintf(stderr, "loadgen: cannot connect\n");
            exit(2);
        }
        conns[i].busy = 1;
        conns[i].start_us = now_us();
    }

    while ((now = now_us()) < deadline) {
        n = epoll_wait(ep, events, 512,
                       (int) ((deadline - now) / 1000) + 1);

        for (i = 0; i < n; i++) {
            c = &conns[events[i].data.u32];
            now = now_us();

            if (c->connecting) {
                err = 0;
                len = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

                if (err != 0) {
                    goto failed;
                }

                if (!(events[i].events & EPOLLOUT)) {
                    continue;
                }

                c->connecting = 0;
            }

            if (c->sent < c->req_len) {
                rc = conn_send(c);
                if (rc == -1) {
                    goto failed;
                }
                if (rc == 0) {
                    continue;
                }
                if (hang_up(c, (int) events[i].data.u32)) {
                    continue;
                }
                /* written: wait for the answer only */
                struct epoll_event ev = { .events = EPOLLIN,
                                          .data.u32 = events[i].data.u32 };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }

            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }

            rc = conn_read(c, &status, &keepalive);

            if (rc == 0) {
                continue;
            }

            if (rc == -1) {
                goto failed;
            }

            record(c->start_us, now, status);

            c->len = 0;
            c->sent = 0;
            c->start_us = now;

            if (!keepalive) {
                conn_close(c);
                reconnects++;
                if (conn_open(c, (int) events[i].data.u32) != 0) {
                    fprintf(stderr, "loadgen: cannot reconnect\n");
                    exit(2);
                }
                continue;
            }

            rc = conn_send(c);
            if (rc == -1) {
                goto failed;
            }

            if (rc == 1 && hang_up(c, (int) events[i].data.u32)) {
                continue;
            }

            {
                struct epoll_event ev = {
                    .events = rc == 1 ? EPOLLIN : EPOLLIN | EPOLLOUT,
                    .data.u32 = events[i].data.u32 };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }

            continue;

        failed:

            record(c->start_us, now, 0);
            conn_close(c);
            reconnects++;
            c->start_us = now;
            if (conn_open(c, (int) events[i].data.u32) != 0) {
                fprintf(stderr, "loadgen: cannot reconnect\n");
                exit(2);
            }
        }
    }

    summary("closed", t0, now_us());
}


static void
burst(int nconns, double timeout)
{
    int                 i, n, connected, answered, status, keepalive, rc, err;
    conn_t             *conns, *c;
    socklen_t           len;
    long long           t0, deadline, now;
    struct epoll_event  events[512];

    conns = calloc((size_t) nconns, sizeof(conn_t));

    deadline = now_us() + (long long) (timeout * 1e6);

    for (i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conn_request(&conns[i], i);
        if (conn_open(&conns[i], i) != 0) {
            fprintf(stderr, "loadgen: cannot connect\n");
            exit(2);
        }
    }

    /* all connections first, so that the requests leave together */

    connected = 0;

    while (connected < nconns && now_us() < deadline) {
        n = epoll_wait(ep, events, 512, 100);

        for (i = 0; i < n; i++) {
            c = &conns[events[i].data.u32];

            if (!c->connecting || !(events[i].events & (EPOLLOUT | EPOLLERR))) {
                continue;
            }

            err = 0;
            len = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

            if (err != 0) {
                fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
                exit(2);
            }

            c->connecting = 0;
            connected++;

            struct epoll_event ev = { .events = EPOLLIN,
                                      .data.u32 = events[i].data.u32 };
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }

    if (connected < nconns) {
        fprintf(stderr, "loadgen: only %d of %d connections established\n",
                connected, nconns);
        exit(2);
    }

    t0 = now_us();

    for (i = 0; i < nconns; i++) {
        conns[i].start_us = now_us();
        if (conn_send(&conns[i]) != 1) {
            fprintf(stderr, "loadgen: could not send request %d at once\n", i);
            exit(2);
        }
    }

    answered = 0;

    while (answered < nconns && (now = now_us()) < deadline) {
        n = epoll_wait(ep, events, 512, (int) ((deadline - now) / 1000) + 1);

        for (i = 0; i < n; i++) {
            c = &conns[events[i].data.u32];

            if (c->done) {
                continue;
            }

            rc = conn_read(c, &status, &keepalive);

            if (rc == 0) {
                continue;
            }

            record(c->start_us, now_us(), rc == 1 ? status : 0);
            c->done = 1;
            answered++;
            conn_close(c);
        }
    }

    for (i = 0; i < nconns; i++) {
        if (!conns[i].done) {
            record(conns[i].start_us, now_us(), 0);
        }
    }

    summary("burst", t0, now_us());
}


int
main(int argc, char **argv)
{
    int            conns;
    double         seconds;
    struct rlimit  rl;

    if (argc != 8) {
        fprintf(stderr, "usage: loadgen closed|burst HOST PORT PATH "
                        "CONNECTIONS SECONDS OUTFILE\n");
        return 2;
    }

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short) atoi(argv[3]));

    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad address %s\n", argv[2]);
        return 2;
    }

    host = argv[2];

    {
        const char  *d = strstr(argv[4], "%d");
        const char  *pc;
        int          other = 0;

        for (pc = strchr(argv[4], '%'); pc; pc = strchr(pc + 1, '%')) {
            if (pc != d) {
                other = 1;
            }
        }

        if (d != NULL) {
            if (other || strlen(argv[4]) > 400) {
                fprintf(stderr, "loadgen: a PATH has one \"%%d\", no other "
                                "\"%%\", at most 400 bytes\n");
                return 2;
            }
            path_fmt = argv[4];
        }
    }

    request_len = (size_t) snprintf(request, sizeof(request),
                                    "GET %s HTTP/1.1\r\nHost: %s\r\n"
                                    "User-Agent: imburse-bench-loadgen\r\n"
                                    "\r\n", argv[4], argv[2]);

    conns = atoi(argv[5]);
    seconds = atof(argv[6]);

    if (getenv("LOADGEN_HANGUP_PCT")) {
        int  pct = atoi(getenv("LOADGEN_HANGUP_PCT"));

        if (pct < 1 || pct > 100) {
            fprintf(stderr, "loadgen: LOADGEN_HANGUP_PCT is 1..100\n");
            return 2;
        }

        hangup_every = 100 / pct;
    }

    if (conns < 1 || conns > 10000 || seconds <= 0 || seconds > 600) {
        fprintf(stderr, "loadgen: 1..10000 connections, 0..600 seconds\n");
        return 2;
    }

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 16384) {
        rl.rlim_cur = rl.rlim_max < 16384 ? rl.rlim_max : 16384;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    ep = epoll_create1(0);
    if (ep == -1) {
        perror("epoll_create1");
        return 2;
    }

    if (strcmp(argv[1], "closed") == 0) {
        closed_loop(conns, seconds);

    } else if (strcmp(argv[1], "burst") == 0) {
        burst(conns, seconds);

    } else {
        fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
        return 2;
    }

    write_samples(argv[7]);

    return 0;
}
