/* openloop: HTTP/1.1 POSTs at a constant offered rate, latency from each request's
 * intended send time (no coordinated omission), for loadtests/bench.py --open-loop.
 *
 *   openloop -r RATE -d SECONDS [-c MAX_CONNECTIONS] [-t TIMEOUT_S] [-l LOG] http://127.0.0.1:PORT/path
 *   openloop -C -d SECONDS -c CLIENTS [-t TIMEOUT_S] [-l LOG] URL     (closed loop, as wrk)
 *
 * Bodies and headers as loadtests/post.lua takes them: BODY_FILE (one body, every request)
 * or BODIES_FILE (one body a line, walked in order so the server sees distinct rows),
 * CONTENT_TYPE, EXTRA_HEADERS ("Name: value" lines).
 *
 * Request i is due at start + i / RATE. When it is due it goes out on an idle keep-alive
 * connection, a new one (up to -c), or waits for one: either way its latency runs from the
 * time it was due, so a server that stalls is charged for every request it held back. One
 * thread, epoll, non-blocking sockets; loopback targets only. Latencies go into a log-linear
 * histogram (0.1% resolution, as HdrHistogram with 3 significant digits). Requests due
 * inside the window but not answered within the timeout after it count as unfinished.
 * Prints one line: OPENLOOP_JSON {...}.
 *
 * -C: closed loop instead: -c connections, each sending its next request as soon as its
 * answer came, for the whole window (latency from the send). -l LOG: one line per answer,
 * written at the end: "SENT_US DONE_US STATUS MODEL", wall-clock (CLOCK_REALTIME) micro-
 * seconds, the HTTP status (0: the connection failed, timed out or closed without an
 * answer) and the answer's X-Agbento-Model header ("-" when none), for loadtests/swap.py.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* -- histogram: values in microseconds; 2048 exact buckets, then 1024 per power of two -- */
#define SUB_BITS 11
#define SUB (1u << SUB_BITS)
#define HALF (SUB / 2)
#define MAGNITUDES 30
#define BUCKETS (SUB + MAGNITUDES * HALF)
static uint64_t hist[BUCKETS];
static uint64_t hist_count, hist_max;
static double hist_sum;

static unsigned bucket_of(uint64_t v) {
    if (v < SUB) return (unsigned)v;
    unsigned e = 63 - __builtin_clzll(v);          /* >= SUB_BITS */
    unsigned shift = e - (SUB_BITS - 1);
    unsigned index = SUB + (e - SUB_BITS) * HALF + (unsigned)((v >> shift) - HALF);
    return index < BUCKETS ? index : BUCKETS - 1;
}

static uint64_t bucket_high(unsigned index) { /* the largest value a bucket holds */
    if (index < SUB) return index;
    unsigned e = (index - SUB) / HALF + SUB_BITS, sub = (index - SUB) % HALF + HALF;
    unsigned shift = e - (SUB_BITS - 1);
    return (((uint64_t)sub + 1) << shift) - 1;
}

static void record(uint64_t us) {
    hist[bucket_of(us)]++;
    hist_count++;
    hist_sum += (double)us;
    if (us > hist_max) hist_max = us;
}

static double percentile_ms(double p) {
    if (!hist_count) return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)hist_count + 0.5), seen = 0;
    if (want < 1) want = 1;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen >= want) {
            uint64_t high = bucket_high(i);
            return (double)(high < hist_max ? high : hist_max) / 1000.0;
        }
    }
    return (double)hist_max / 1000.0;
}

/* -- the answers log (-l): kept in memory, written at the end ----------------------------- */
typedef struct { uint64_t sent_us, done_us; uint16_t status; uint8_t model; } answer_t;
static answer_t *answers;
static size_t n_answers, cap_answers;
static const char *answers_path;
#define MODELS 255
static char *models[MODELS + 1];           /* the distinct X-Agbento-Model values seen */
static int n_models;

static uint8_t model_index(const char *value, size_t len) {
    if (!value) return 0;                   /* 0: no header */
    for (int i = 1; i <= n_models; i++)
        if (strlen(models[i]) == len && !memcmp(models[i], value, len)) return (uint8_t)i;
    if (n_models == MODELS) return 0;
    models[++n_models] = strndup(value, len);
    return (uint8_t)n_models;
}

static void log_answer(uint64_t sent_us, uint64_t done_us, int status, uint8_t model) {
    if (!answers_path) return;
    if (n_answers == cap_answers) {
        cap_answers = cap_answers * 2 + 65536;
        answers = realloc(answers, cap_answers * sizeof *answers);
        if (!answers) { fprintf(stderr, "openloop: memory\n"); exit(2); }
    }
    answers[n_answers++] = (answer_t){sent_us, done_us, (uint16_t)status, model};
}

static void write_answers(int64_t to_real_us) {
    if (!answers_path) return;
    FILE *f = fopen(answers_path, "w");
    if (!f) { perror(answers_path); exit(2); }
    for (size_t i = 0; i < n_answers; i++)
        fprintf(f, "%lld %lld %u %s\n", (long long)answers[i].sent_us + (long long)to_real_us,
                (long long)answers[i].done_us + (long long)to_real_us, answers[i].status,
                answers[i].model ? models[answers[i].model] : "-");
    fclose(f);
}

/* -- requests ------------------------------------------------------------------------- */
typedef struct { char *data; size_t len; } buf_t;
static buf_t *requests;
static size_t n_requests;

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void die(const char *what) {
    fprintf(stderr, "openloop: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(2);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) die("read body file");
    fclose(f);
    data[size] = 0;
    *len = (size_t)size;
    return data;
}

static void add_request(const char *head, size_t head_len, const char *body, size_t body_len) {
    char length[64];
    int n = snprintf(length, sizeof length, "Content-Length: %zu\r\n\r\n", body_len);
    buf_t *r = &requests[n_requests++];
    r->len = head_len + (size_t)n + body_len;
    r->data = malloc(r->len);
    if (!r->data) die("memory");
    memcpy(r->data, head, head_len);
    memcpy(r->data + head_len, length, (size_t)n);
    memcpy(r->data + head_len + n, body, body_len);
}

static void build_requests(const char *host, const char *path) {
    const char *type = getenv("CONTENT_TYPE"), *extra = getenv("EXTRA_HEADERS");
    char head[8192];
    int n = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n",
                     path, host, type && *type ? type : "application/json");
    for (const char *line = extra; line && *line;) { /* one "Name: value" a line */
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len && n + (int)len + 2 < (int)sizeof head)
            n += snprintf(head + n, sizeof head - (size_t)n, "%.*s\r\n", (int)len, line);
        line = end ? end + 1 : line + len;
    }
    size_t len;
    if (getenv("BODIES_FILE")) {
        char *all = read_file(getenv("BODIES_FILE"), &len);
        size_t lines = 0;
        for (size_t i = 0; i < len; i++) lines += all[i] == '\n';
        requests = calloc(lines + 1, sizeof *requests);
        for (char *line = all; line < all + len;) {
            char *end = memchr(line, '\n', (size_t)(all + len - line));
            size_t body_len = end ? (size_t)(end - line) : (size_t)(all + len - line);
            if (body_len) add_request(head, (size_t)n, line, body_len);
            line += body_len + 1;
        }
        free(all);
    } else if (getenv("BODY_FILE")) {
        char *body = read_file(getenv("BODY_FILE"), &len);
        requests = calloc(1, sizeof *requests);
        add_request(head, (size_t)n, body, len);
        free(body);
    }
    if (!n_requests) { errno = 0; die("no body: set BODY_FILE or BODIES_FILE"); }
}

/* -- connections ------------------------------------------------------------------------ */
enum { IDLE, CONNECTING, BUSY };
typedef struct {
    int fd, state, reused;
    uint64_t index, due_us, sent_us;       /* the request in flight */
    size_t written;
    char *in; size_t in_len, in_cap;
} conn_t;

static struct sockaddr_in target;
static int epfd;
static conn_t *conns;
static int n_conns, max_conns;
static struct {
    uint64_t due, sent, completed, non2xx, connect, read, write, timeout, retried, unfinished;
    uint64_t late, max_waiting;
} count;
#define STATUSES 600
static uint64_t by_status[STATUSES];

static void request_failed(conn_t *c, uint64_t now) { /* its request ends unanswered */
    if (c->state != IDLE) log_answer(c->sent_us, now, 0, 0);
}

static int open_socket(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        count.connect++;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = CONNECTING;
    c->reused = 0;
    c->in_len = 0;
    return 0;
}

static void close_conn(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = IDLE;
}

static void want(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void pump_write(conn_t *c) {
    buf_t *r = &requests[c->index % n_requests];
    while (c->written < r->len) {
        ssize_t n = write(c->fd, r->data + c->written, r->len - c->written);
        if (n > 0) { c->written += (size_t)n; continue; }
        if (n < 0 && errno == EAGAIN) { want(c, EPOLLIN | EPOLLOUT); return; }
        count.write++;
        request_failed(c, now_us());
        close_conn(c);
        return;
    }
    want(c, EPOLLIN);
}

static void start_request(conn_t *c, uint64_t index, uint64_t due_us, uint64_t now) {
    c->index = index;
    c->due_us = due_us;
    c->sent_us = now;
    c->written = 0;
    c->in_len = 0;
    if (c->state == CONNECTING) return; /* goes out once connected (every new connection
                                         * is opened for a request) */
    c->state = BUSY;
    pump_write(c);
}

/* 0: more to read; 1: a whole response (status set, *close_after when the server said so);
 * -1: not HTTP. */
static int parse_response(conn_t *c, int *status, int *close_after, const char **model,
                          size_t *model_len) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->in) + 4;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7)) return -1;
    *status = atoi(c->in + 9);
    *close_after = 0;
    *model = NULL;
    long length = -1;
    int chunked = 0;
    for (char *line = memchr(c->in, '\n', head) + 1; line < c->in + head - 2;) {
        char *eol = memchr(line, '\n', (size_t)(c->in + head - line));
        if (!strncasecmp(line, "Content-Length:", 15)) length = atol(line + 15);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked")
                 && strcasestr(line, "chunked") < eol) chunked = 1;
        else if (!strncasecmp(line, "Connection:", 11) && strcasestr(line, "close")
                 && strcasestr(line, "close") < eol) *close_after = 1;
        else if (!strncasecmp(line, "X-Agbento-Model:", 16)) {
            const char *v = line + 16, *e = eol;
            while (v < e && *v == ' ') v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ')) e--;
            *model = v;
            *model_len = (size_t)(e - v);
        }
        line = eol + 1;
    }
    if (chunked) { /* walk the chunks: done at the zero-length one and its blank line */
        size_t at = head;
        for (;;) {
            char *crlf = memmem(c->in + at, c->in_len - at, "\r\n", 2);
            if (!crlf) return 0;
            size_t size = strtoul(c->in + at, NULL, 16);
            at = (size_t)(crlf - c->in) + 2;
            if (size == 0) return memmem(c->in + at - 2, c->in_len - at + 2, "\r\n\r\n", 4)
                ? 1 : 0;
            if (c->in_len < at + size + 2) return 0;
            at += size + 2;
        }
    }
    if (length < 0) return -1; /* no length and not chunked: not what a server here answers */
    return c->in_len >= head + (size_t)length ? 1 : 0;
}

static int retry_request(conn_t *c); /* below */

static void on_readable(conn_t *c, uint64_t now) {
    int eof = 0;
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in) die("memory");
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
        if (n > 0) { c->in_len += (size_t)n; c->in[c->in_len] = 0; continue; }
        if (n < 0 && errno == EAGAIN) break;
        /* closed: an idle keep-alive connection the server let go is no error; a request
         * that went out on a reused one and got nothing back is sent again, once; an answer
         * whose end came with the close (Connection: close) is an answer */
        if (c->state == IDLE) { close_conn(c); return; }
        if (c->state == BUSY && c->in_len == 0 && c->reused && retry_request(c)) return;
        eof = 1;
        break;
    }
    if (c->state != BUSY) {
        if (eof) { count.read++; request_failed(c, now); close_conn(c); }
        return;
    }
    const char *model = NULL;
    size_t model_len = 0;
    int status = 0, close_after = 0;
    int done = parse_response(c, &status, &close_after, &model, &model_len);
    if (done <= 0 && (done < 0 || eof)) {
        count.read++;
        request_failed(c, now);
        close_conn(c);
        return;
    }
    if (done == 0) return;
    if (eof) close_after = 1;
    record(now - c->due_us);
    log_answer(c->sent_us, now, status, model_index(model, model_len));
    count.completed++;
    if (status < 200 || status > 299) {
        count.non2xx++;
        if (status > 0 && status < STATUSES) by_status[status]++;
    }
    c->state = IDLE;
    c->reused = 1;
    c->in_len = 0;
    if (close_after) close_conn(c);
}

/* -- the schedule --------------------------------------------------------------------------- */
static uint64_t next_index;      /* the next request not yet sent */
static uint64_t retry_stack[4096];
static uint64_t retry_due[4096];
static int n_retry;

static int retry_request(conn_t *c) {
    if (n_retry >= 4096) return 0;
    retry_stack[n_retry] = c->index;
    retry_due[n_retry++] = c->due_us;
    count.retried++;
    close_conn(c);
    return 1;
}

static conn_t *idle_conn(void) {
    for (int i = 0; i < n_conns; i++)  /* the first idle one: busy ones stay few and warm */
        if (conns[i].state == IDLE && conns[i].fd >= 0) return &conns[i];
    for (int i = 0; i < n_conns; i++)  /* one the server closed: open it again */
        if (conns[i].fd < 0 && open_socket(&conns[i]) == 0) return &conns[i];
    if (n_conns < max_conns && open_socket(&conns[n_conns]) == 0) return &conns[n_conns++];
    return NULL;
}

#define USAGE "usage: openloop {-r RATE | -C} -d SECONDS [-c CONNS] [-t TIMEOUT] [-l LOG] URL\n"

int main(int argc, char **argv) {
    double rate = 0, seconds = 0, timeout_s = 30;
    int closed_loop = 0;
    max_conns = 256;
    int opt;
    while ((opt = getopt(argc, argv, "r:d:c:t:l:C")) != -1) {
        if (opt == 'r') rate = atof(optarg);
        else if (opt == 'C') closed_loop = 1;
        else if (opt == 'l') answers_path = optarg;
        else if (opt == 'd') seconds = atof(optarg);
        else if (opt == 'c') max_conns = atoi(optarg);
        else if (opt == 't') timeout_s = atof(optarg);
        else { fprintf(stderr, "%s", USAGE); return 2; }
    }
    if (optind >= argc || (rate <= 0 && !closed_loop) || seconds <= 0 || max_conns < 1) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    const char *url = argv[optind];
    char host[256] = {0}, path[2048] = "/";
    int port = 80;
    if (sscanf(url, "http://%255[^:/]:%d%2047s", host, &port, path) < 2
        && sscanf(url, "http://%255[^/]%2047s", host, path) < 1) die("bad URL");
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1 || (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        errno = 0;
        die("only loopback targets (127.0.0.0/8)");
    }
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    build_requests(host_header, path);
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake when a request is due, not up to 50 us later */
    epfd = epoll_create1(0);
    conns = calloc((size_t)max_conns, sizeof *conns);
    for (int i = 0; i < max_conns; i++) conns[i].fd = -1;

    struct timespec real;
    clock_gettime(CLOCK_REALTIME, &real);
    const int64_t to_real_us = (int64_t)real.tv_sec * 1000000 + real.tv_nsec / 1000
                               - (int64_t)now_us();
    const uint64_t start = now_us() + 20000; /* the first request is due in 20 ms */
    const uint64_t window = (uint64_t)(seconds * 1e6), timeout = (uint64_t)(timeout_s * 1e6);
    uint64_t total = closed_loop ? UINT64_MAX : (uint64_t)(rate * seconds + 0.5);
    const double interval = closed_loop ? 0 : 1e6 / rate;
    uint64_t offset = (uint64_t)getpid() * 7919u; /* where in the bodies this run starts */
    struct epoll_event events[512];
    for (;;) {
        uint64_t now = now_us();
        /* due requests go out while there is a connection for them */
        while (n_retry > 0 || next_index < total) {
            uint64_t index, due;
            if (n_retry > 0) { index = retry_stack[n_retry - 1]; due = retry_due[n_retry - 1]; }
            else if (closed_loop) {  /* every free connection sends at once, in the window */
                if (now < start) break;
                if (now >= start + window) { total = next_index; break; }
                due = now;
                index = next_index + offset;
            } else {
                due = start + (uint64_t)((double)next_index * interval);
                if (due > now) break;
                index = next_index + offset;
            }
            conn_t *c = idle_conn();
            if (!c) break;
            if (n_retry > 0) n_retry--; else next_index++;
            if (now - due > 1000) count.late++;  /* went out over 1 ms after it was due */
            count.sent++;
            start_request(c, index, due, now);
        }
        if (!closed_loop) {
            uint64_t due_so_far = now < start ? 0
                : (uint64_t)((double)(now - start) / interval) + 1;
            if (due_so_far > total) due_so_far = total;
            if (due_so_far > next_index && due_so_far - next_index > count.max_waiting)
                count.max_waiting = due_so_far - next_index;
        }
        /* timeouts: a request outstanding too long closes its connection */
        int busy = 0;
        for (int i = 0; i < n_conns; i++) {
            conn_t *c = &conns[i];
            if (c->fd < 0 || c->state == IDLE) continue;
            if (now - c->due_us > timeout) {
                count.timeout++;
                request_failed(c, now);
                close_conn(c);
                continue;
            }
            busy++;
        }
        if (next_index >= total && n_retry == 0 && busy == 0) break;
        if (now > start + window + timeout) break;   /* the rest never finished */
        uint64_t wait_us = 50000;  /* until the next request is due, at most 50 ms */
        if (next_index < total && n_retry == 0 && !closed_loop) {
            uint64_t next_due = start + (uint64_t)((double)next_index * interval);
            wait_us = next_due > now ? next_due - now : 0;
            if (wait_us > 50000) wait_us = 50000;
        }
        struct timespec wait = {.tv_sec = 0, .tv_nsec = (long)wait_us * 1000};
        int n = epoll_pwait2(epfd, events, 512, &wait, NULL);
        now = now_us();
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == CONNECTING && (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || (events[i].events & EPOLLERR)) {  /* its request ends here */
                    count.connect++;
                    request_failed(c, now);
                    close_conn(c);
                    continue;
                }
                c->state = BUSY;
                pump_write(c);
                continue;
            }
            if (c->state == BUSY && (events[i].events & EPOLLOUT)) pump_write(c);
            if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                on_readable(c, now);
            }
        }
    }
    uint64_t finished = now_us();
    write_answers(to_real_us);
    count.due = total;
    uint64_t ended = count.completed + count.timeout + count.read + count.write + count.connect;
    count.unfinished = total > ended ? total - ended : 0;
    char statuses[4096] = "";
    size_t at = 0;
    for (int s = 0; s < STATUSES; s++)
        if (by_status[s] && at < sizeof statuses - 64)
            at += (size_t)snprintf(statuses + at, sizeof statuses - at, "%s\"%d\": %llu",
                                   at ? ", " : "", s, (unsigned long long)by_status[s]);
    printf("OPENLOOP_JSON {\"rate\": %.3f, \"seconds\": %.3f, \"due\": %llu, \"sent\": %llu, "
           "\"requests\": %llu, \"duration_us\": %llu, \"non2xx\": %llu, \"errors\": %llu, "
           "\"connect_errors\": %llu, \"read_errors\": %llu, \"write_errors\": %llu, "
           "\"timeouts\": %llu, \"unfinished\": %llu, \"retried\": %llu, \"late\": %llu, "
           "\"max_waiting\": %llu, \"connections\": %d, "
           "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p95_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"p999_ms\": %.3f, \"max_ms\": %.3f, \"mean_ms\": %.3f, "
           "\"non2xx_by_status\": {%s}}\n",
           rate, seconds, (unsigned long long)count.due, (unsigned long long)count.sent,
           (unsigned long long)count.completed, (unsigned long long)(finished - start),
           (unsigned long long)count.non2xx,
           (unsigned long long)(count.connect + count.read + count.write + count.timeout
                                + count.unfinished),
           (unsigned long long)count.connect, (unsigned long long)count.read,
           (unsigned long long)count.write, (unsigned long long)count.timeout,
           (unsigned long long)count.unfinished, (unsigned long long)count.retried,
           (unsigned long long)count.late, (unsigned long long)count.max_waiting, n_conns,
           percentile_ms(50), percentile_ms(90), percentile_ms(95), percentile_ms(99),
           percentile_ms(99.9), (double)hist_max / 1000.0,
           hist_count ? hist_sum / (double)hist_count / 1000.0 : 0.0, statuses);
    return 0;
}
