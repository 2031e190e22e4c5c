// loadgen: a light WebSocket fan-out load generator (one process, one thread, epoll), so that the nodes and not
// the generator are the bound. The same shape and counts as `channels-bench fanout`: clients join
// /ws/chat/<room>/ round robin over the nodes, client p < publishers publishes into room p % rooms with at most
// --window messages not yet echoed back to it, each message `{"message":"p|seq|sent_ns|padding"}`, and every
// receiver counts gaps, duplicates and latency. It also counts the clients the server closed, by close code (a
// reading client closed 4008 is the overload this tool exists to show), and reports its own CPU.
//
// Build: cc -O2 -o loadgen loadgen.c
// Usage: loadgen --node HOST:PORT [--node ...] [--rooms 1] [--clients 100] [--publishers 10] [--window 4]
//                [--payload 64] [--duration 10] [--drain 2] [--path /ws/chat/{room}/] [--pause-us 1000]
//                [--rate 0] [--origin URL]
// --rate N sends N messages per second in all, spread evenly over the publishers, whatever comes back (0, the
// default, is flat out within --window); --origin sends that Origin header (Channels' AllowedHostsOriginValidator
// refuses an upgrade without one).
// Prints one JSON object.
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING, OPEN, CLOSED };

typedef struct {
    int fd, room, state, close_code, want_out, opened;
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out;
    size_t out_len, out_cap;
    int64_t *next;  // next expected sequence from each publisher
    long gaps, dups;
    uint32_t mask_state;
} client_t;

static client_t *clients;
static int client_count, rooms = 1, per_room = 100, publishers = 10, window = 4, payload = 64;
static double duration = 10, drain = 2;
static int pause_us = 1000;
static double rate = 0;
static const char *origin = NULL;
static const char *path_template = "/ws/chat/{room}/";
static char *hosts[16];
static int ports[16], node_count;
static int epfd;
static int64_t *sent, *echoed;
static long delivered, closed_by_server, connect_failures;
static long close_codes[5000];
static uint64_t latency_us[100001], latency_over;  // microseconds up to 100 ms, then 1 ms buckets below
static uint64_t latency_ms[60001];
static uint64_t end_ns;
static char padding[65536];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void reserve(unsigned char **buffer, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t grown = *cap ? *cap : 4096;
    while (grown < need) grown *= 2;
    *buffer = realloc(*buffer, grown);
    if (!*buffer) die("realloc");
    *cap = grown;
}

static void watch(client_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = out;
}

// Writes what is pending; keeps the rest and asks for EPOLLOUT when the socket is full.
static void flush_out(client_t *c) {
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            c->state = CLOSED;
            close(c->fd);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    if ((c->out_len > 0) != c->want_out) watch(c, c->out_len > 0);
}

static void queue(client_t *c, const void *bytes, size_t len) {
    reserve(&c->out, &c->out_cap, c->out_len + len);
    memcpy(c->out + c->out_len, bytes, len);
    c->out_len += len;
}

// A masked client frame (RFC 6455 5.3), the mask from a per-client xorshift.
static void send_frame(client_t *c, int opcode, const unsigned char *data, size_t len) {
    unsigned char header[8];
    size_t h = 0;
    header[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        header[h++] = (unsigned char)(0x80 | len);
    } else {
        header[h++] = 0x80 | 126;
        header[h++] = (unsigned char)(len >> 8);
        header[h++] = (unsigned char)len;
    }
    uint32_t x = c->mask_state;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    c->mask_state = x;
    unsigned char mask[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16), (unsigned char)(x >> 24)};
    memcpy(header + h, mask, 4);
    h += 4;
    reserve(&c->out, &c->out_cap, c->out_len + h + len);
    memcpy(c->out + c->out_len, header, h);
    unsigned char *body = c->out + c->out_len + h;
    for (size_t i = 0; i < len; i++) body[i] = data[i] ^ mask[i & 3];
    c->out_len += h + len;
}

static void publish(int p) {
    client_t *c = &clients[p];
    if (c->state != OPEN) return;
    char text[70000];
    int n = snprintf(text, sizeof text, "{\"message\":\"%d|%lld|%llu|%s\"}", p, (long long)sent[p], (unsigned long long)now_ns(), padding);
    send_frame(c, 1, (unsigned char *)text, (size_t)n);
    sent[p]++;
}

static void record_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us <= 100000) latency_us[us]++;
    else if (us / 1000 <= 60000) latency_ms[us / 1000]++;
    else latency_over++;
}

static double percentile_ms(double p) {
    uint64_t total = latency_over;
    for (int i = 0; i <= 100000; i++) total += latency_us[i];
    for (int i = 0; i <= 60000; i++) total += latency_ms[i];
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)total), seen = 0;
    for (int i = 0; i <= 100000; i++) if ((seen += latency_us[i]) > rank) return i / 1000.0;
    for (int i = 100; i <= 60000; i++) if ((seen += latency_ms[i]) > rank) return (double)i;
    return 60000;
}

// A text frame: `{"message":"p|seq|sent_ns|..."}`.
static void received_text(client_t *c, const unsigned char *data, size_t len) {
    uint64_t arrived = now_ns();
    const char *key = memmem(data, len, "\"message\":", 10);
    if (!key) return;
    const char *s = key + 10;
    const char *end = (const char *)data + len;
    while (s < end && *s == ' ') s++;
    if (s >= end || *s != '"') return;
    s++;
    char *after;
    long p = strtol(s, &after, 10);
    if (*after != '|' || p < 0 || p >= publishers) return;
    long long seq = strtoll(after + 1, &after, 10);
    if (*after != '|') return;
    unsigned long long stamp = strtoull(after + 1, &after, 10);
    if (seq == c->next[p]) {
        c->next[p] = seq + 1;
    } else if (seq > c->next[p]) {
        c->gaps += seq - c->next[p];
        c->next[p] = seq + 1;
    } else {
        c->dups++;
    }
    delivered++;
    record_latency(arrived > stamp ? arrived - stamp : 0);
    if (c == &clients[p]) {
        echoed[p]++;
        if (rate == 0 && now_ns() < end_ns && sent[p] - echoed[p] < window) publish((int)p);
    }
}

static void closed(client_t *c, int code) {
    if (c->state == CLOSED) return;
    c->state = CLOSED;
    c->close_code = code;
    closed_by_server++;
    if (code >= 0 && code < 5000) close_codes[code]++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

// Frames from the server (never masked, never fragmented by the nodes measured).
static void parse_frames(client_t *c) {
    size_t at = 0;
    while (c->state == OPEN && c->in_len - at >= 2) {
        unsigned char *f = c->in + at;
        int opcode = f[0] & 0x0f;
        size_t len = f[1] & 0x7f, h = 2;
        if (len == 126) {
            if (c->in_len - at < 4) break;
            len = ((size_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            if (c->in_len - at < 10) break;
            len = 0;
            for (int i = 2; i < 10; i++) len = (len << 8) | f[i];
            h = 10;
        }
        if (c->in_len - at < h + len) break;
        unsigned char *data = f + h;
        if (opcode == 1) {
            received_text(c, data, len);
        } else if (opcode == 8) {
            closed(c, len >= 2 ? (data[0] << 8) | data[1] : 1005);
            return;
        } else if (opcode == 9) {
            send_frame(c, 10, data, len);
        }
        at += h + len;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

static void readable(client_t *c) {
    for (;;) {
        reserve(&c->in, &c->in_cap, c->in_len + 65536);
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n == 0) { closed(c, 1006); return; }
        if (n < 0) {
            if (errno == EAGAIN) break;
            closed(c, 1006);
            return;
        }
        c->in_len += (size_t)n;
        if (c->state == CONNECTING) {
            unsigned char *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!head_end) continue;
            if (c->in_len < 12 || memcmp(c->in + 9, "101", 3) != 0) {
                c->state = CLOSED;
                connect_failures++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                return;
            }
            size_t head = (size_t)(head_end - c->in) + 4;
            memmove(c->in, c->in + head, c->in_len - head);
            c->in_len -= head;
            c->state = OPEN;
            c->opened = 1;
        }
        parse_frames(c);
        if (c->state != OPEN) return;
    }
}

static void open_client(int index) {
    client_t *c = &clients[index];
    int node = index % node_count;
    c->room = index % rooms;
    c->mask_state = 2463534242u + (uint32_t)index * 2654435761u;
    c->next = calloc((size_t)publishers, sizeof(int64_t));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[node])};
    inet_pton(AF_INET, hosts[node], &address.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = 1;
    char path[512], room[32], request[2048], origin_header[600] = "";
    snprintf(room, sizeof room, "bench%d", c->room);
    const char *mark = strstr(path_template, "{room}");
    if (mark) snprintf(path, sizeof path, "%.*s%s%s", (int)(mark - path_template), path_template, room, mark + 6);
    else snprintf(path, sizeof path, "%s", path_template);
    if (origin) snprintf(origin_header, sizeof origin_header, "Origin: %s\r\n", origin);
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, hosts[node], ports[node], origin_header);
    // The parts are bounded (path 511, host, origin 500), so the request always fits; a cut one would be sent
    // malformed.
    if (n < 0 || (size_t)n >= sizeof request) { fprintf(stderr, "loadgen: the upgrade request is too long\n"); exit(2); }
    queue(c, request, (size_t)n);
}

static void loop_once(int timeout_ms) {
    struct epoll_event events[256];
    int n = epoll_wait(epfd, events, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        client_t *c = events[i].data.ptr;
        if (c->state == CLOSED) continue;
        if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
            if (c->state == CONNECTING) { c->state = CLOSED; connect_failures++; close(c->fd); continue; }
            closed(c, 1006);
            continue;
        }
        if (events[i].events & EPOLLIN) readable(c);
        if (c->state != CLOSED && (events[i].events & EPOLLOUT)) flush_out(c);
    }
    // Frames queued while reading (publishes after echoes, pongs) go out now.
    for (int i = 0; i < client_count; i++) if (clients[i].state != CLOSED && clients[i].out_len > 0 && !clients[i].want_out) flush_out(&clients[i]);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "loadgen: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--node")) {
            if (node_count == 16) { fprintf(stderr, "loadgen: at most 16 nodes\n"); return 2; }
            char *colon = strrchr(v, ':');
            if (!colon) { fprintf(stderr, "loadgen: --node takes host:port, not %s\n", v); return 2; }
            hosts[node_count] = strndup(v, (size_t)(colon - v));
            ports[node_count++] = atoi(colon + 1);
        } else if (!strcmp(a, "--rooms")) rooms = atoi(v);
        else if (!strcmp(a, "--clients")) per_room = atoi(v);
        else if (!strcmp(a, "--publishers")) publishers = atoi(v);
        else if (!strcmp(a, "--window")) window = atoi(v);
        else if (!strcmp(a, "--payload")) payload = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--drain")) drain = atof(v);
        else if (!strcmp(a, "--path")) path_template = v;
        else if (!strcmp(a, "--pause-us")) pause_us = atoi(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--origin")) {
            if (strlen(v) > 500) { fprintf(stderr, "loadgen: --origin is at most 500 characters\n"); return 2; }
            origin = v;
        }
        else { fprintf(stderr, "loadgen: unknown option %s\n", a); return 2; }
        i++;
    }
    if (node_count == 0) { hosts[0] = "127.0.0.1"; ports[0] = 8000; node_count = 1; }
    client_count = rooms * per_room;
    if (rooms < 1 || per_room < 1 || publishers < 1 || publishers > client_count || window < 1 || payload < 32 || payload > 60000 || rate < 0) {
        fprintf(stderr, "loadgen: rooms, clients, publishers, window positive; publishers <= rooms x clients; 32 <= payload <= 60000; rate >= 0\n");
        return 2;
    }
    memset(padding, 'x', (size_t)payload - 32);
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    clients = calloc((size_t)client_count, sizeof(client_t));
    sent = calloc((size_t)publishers, sizeof(int64_t));
    echoed = calloc((size_t)publishers, sizeof(int64_t));
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");

    // Connect everyone, 64 handshakes in flight at a time.
    uint64_t connect_deadline = now_ns() + 30000000000ull;
    int started = 0;
    for (;;) {
        int pending = 0, open = 0;
        for (int i = 0; i < started; i++) {
            if (clients[i].state == CONNECTING) pending++;
            else if (clients[i].state == OPEN) open++;
        }
        while (started < client_count && pending < 64) { open_client(started++); pending++; }
        if (pending == 0 && started == client_count) break;
        if (now_ns() > connect_deadline) break;
        loop_once(10);
    }
    int members[4096] = {0};
    // Connected: the upgrade succeeded, even if the server closed the client since (counted by close code, such as a
    // refused Origin's 4403, whether that close came before or after this point); only open ones expect deliveries.
    int connected = 0;
    for (int i = 0; i < client_count; i++) {
        if (clients[i].opened) connected++;
        if (clients[i].state == OPEN && clients[i].room < 4096) members[clients[i].room]++;
    }
    if (connected == 0) { fprintf(stderr, "loadgen: no client could connect\n"); return 1; }

    struct rusage before;
    getrusage(RUSAGE_SELF, &before);
    uint64_t begin = now_ns();
    end_ns = begin + (uint64_t)(duration * 1e9);
    if (rate == 0) for (int p = 0; p < publishers; p++) for (int k = 0; k < window; k++) publish(p);
    // A short pause between rounds lets each socket gather several messages, so that one recv takes them all: a
    // server that writes every message on its own would otherwise cost the generator a system call per delivery.
    // At a fixed rate each publisher sends what its schedule says is due by now (publisher p's first message at
    // p / rate, so the sends are spread, not in bursts of --publishers).
    double per_publisher = rate / publishers;
    for (uint64_t now = now_ns(); now < end_ns; now = now_ns()) {
        if (rate > 0) {
            double elapsed = (double)(now - begin) / 1e9;
            for (int p = 0; p < publishers; p++) {
                double slots = (elapsed - (double)p / rate) * per_publisher;
                int64_t due = slots < 0 ? 0 : (int64_t)slots + 1;
                while (sent[p] < due && clients[p].state == OPEN) publish(p);
            }
        }
        loop_once(rate > 0 ? 1 : 5);
        if (pause_us > 0) usleep((useconds_t)pause_us);
    }
    uint64_t send_end = now_ns();
    uint64_t drain_end = send_end + (uint64_t)(drain * 1e9);
    long expected = 0;
    for (;;) {
        expected = 0;
        for (int p = 0; p < publishers; p++) expected += sent[p] * (p % rooms < 4096 ? members[p % rooms] : 0);
        if (delivered >= expected || now_ns() > drain_end) break;
        loop_once(5);
    }
    uint64_t finished = now_ns();
    struct rusage after;
    getrusage(RUSAGE_SELF, &after);
    double cpu = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec) + (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6 +
                 (double)(after.ru_stime.tv_sec - before.ru_stime.tv_sec) + (double)(after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6;

    long messages = 0, lost = 0, dups = 0;
    for (int p = 0; p < publishers; p++) messages += sent[p];
    for (int i = 0; i < client_count; i++) {
        client_t *c = &clients[i];
        if (!c->opened) continue;
        lost += c->gaps;
        dups += c->dups;
        for (int p = 0; p < publishers; p++) if (p % rooms == c->room) lost += sent[p] > c->next[p] ? sent[p] - c->next[p] : 0;
    }
    double seconds = (double)(finished - begin) / 1e9;
    char rate_text[64];
    if (rate > 0) snprintf(rate_text, sizeof rate_text, "%.0f/s", rate);
    else snprintf(rate_text, sizeof rate_text, "flat out (window %d)", window);
    printf("{\"generator\":\"loadgen\",\"nodes\":%d,\"rooms\":%d,\"clients_per_room\":%d,\"publishers\":%d,\"rate\":\"%s\",\"payload\":%d,"
           "\"connected\":%d,\"connect_failures\":%ld,\"messages_sent\":%ld,\"messages_per_second\":%.1f,\"deliveries\":%ld,"
           "\"deliveries_per_second\":%.1f,\"expected_deliveries\":%ld,\"lost\":%ld,\"duplicates\":%ld,\"closed_by_server\":%ld,\"close_codes\":{",
           node_count, rooms, per_room, publishers, rate_text, payload, connected, connect_failures, messages, (double)messages / ((double)(send_end - begin) / 1e9),
           delivered, (double)delivered / seconds, expected, lost, dups, closed_by_server);
    int first = 1;
    for (int code = 0; code < 5000; code++) if (close_codes[code]) { printf("%s\"%d\":%ld", first ? "" : ",", code, close_codes[code]); first = 0; }
    printf("},\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"latency_p999_ms\":%.3f,\"load_generator_cpu_seconds\":%.2f}\n",
           percentile_ms(50), percentile_ms(99), percentile_ms(99.9), cpu);
    return 0;
}
