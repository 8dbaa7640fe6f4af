/*
 * fsync_baseline: the "one fsync per write" baseline of the durable-write comparison in scripts/bench.sh.
 * An AF_UNIX stream server, single-threaded (epoll), that for every complete length-prefixed frame appends the
 * frame to a file, calls fdatasync, and only then echoes the frame back: each acknowledged request costs one
 * write + one fdatasync of its own, with no batching across requests (the naive durable design that group
 * commit is measured against). Drive it with `loadgen echo`.
 *
 *   fsync_baseline --socket PATH --file PATH
 *
 * Stops on SIGTERM/SIGINT. Build: gcc -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
    int fd;
    uint8_t *in;
    size_t len, cap;
} conn_t;

static volatile sig_atomic_t stopping;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* the client is slow: wait for room */
            fd_set ws;
            FD_ZERO(&ws);
            FD_SET(fd, &ws);
            select(fd + 1, NULL, &ws, NULL, NULL);
            continue;
        }
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else { fprintf(stderr, "usage: fsync_baseline --socket PATH --file PATH\n"); return 2; }
    }
    if (!path || !file) { fprintf(stderr, "usage: fsync_baseline --socket PATH --file PATH\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int log = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) { perror(file); return 1; }
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) { fprintf(stderr, "socket path too long\n"); return 1; }
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[256];
    while (!stopping) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->cap - c->len < 65536) {
                c->cap = c->cap ? c->cap * 2 : 131072;
                c->in = realloc(c->in, c->cap);
            }
            ssize_t r = read(c->fd, c->in + c->len, c->cap - c->len);
            int bad = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
            if (r > 0) {
                c->len += (size_t)r;
                size_t off = 0;
                while (!bad && c->len - off >= 4) {
                    uint32_t l = (uint32_t)c->in[off] << 24 | (uint32_t)c->in[off + 1] << 16 | (uint32_t)c->in[off + 2] << 8 | c->in[off + 3];
                    if (c->len - off < 4 + (size_t)l) break;
                    /* one write + one fdatasync per request, then its acknowledgement */
                    if (write_all(log, c->in + off, 4 + l) < 0 || fdatasync(log) < 0) { perror("journal"); return 1; }
                    bad = write_all(c->fd, c->in + off, 4 + l) < 0;
                    off += 4 + l;
                }
                memmove(c->in, c->in + off, c->len - off);
                c->len -= off;
            }
            if (bad) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c->in);
                free(c);
            }
        }
    }
    unlink(path);
    return 0;
}
