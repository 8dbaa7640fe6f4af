/*
 * echo_server: the raw limit for scripts/bench.sh. An AF_UNIX stream server that sends every complete
 * length-prefixed frame (4-byte big-endian length, then that many bytes) back unchanged, batching all complete
 * frames of one read into one write, as Tollgate does with the responses of one read burst. Nothing that answers
 * frames on a Unix socket can be faster than this.
 *
 *   echo_server --socket PATH [--threads N]
 *
 * --threads 1 serves every connection from one epoll loop. With N > 1 the accepting thread
 * hands connections round-robin to N epoll loops. scripts/bench.sh runs it with one loop per core (--threads
 * $(nproc)), which measured fastest on the 2-vCPU benchmark machine (alternating 1 s runs, 8x1: 140-162 k/s with
 * one loop, 157-201 k/s with two; 8x16: 1.4-2.0 M/s vs 2.3-2.5 M/s; 1x1 the same), and matches Tollgate, which
 * runs one event loop per core. Stops on SIGTERM/SIGINT. Build: gcc -O2 -pthread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
    uint8_t *out; /* bytes not yet written back */
    size_t olen, ooff, ocap;
} conn_t;

static int nloops = 1;
static int *loops;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void close_conn(conn_t *c) {
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void grow(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 65536;
    while (n < need) n *= 2;
    *p = realloc(*p, n);
    if (!*p) { perror("realloc"); exit(1); }
    *cap = n;
}

/* Writes pending output; returns -1 when the connection must close, 0 otherwise. */
static int flush_out(int ep, conn_t *c) {
    while (c->ooff < c->olen) {
        ssize_t w = write(c->fd, c->out + c->ooff, c->olen - c->ooff);
        if (w > 0) { c->ooff += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c}; /* stop reading until drained */
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        return -1;
    }
    c->ooff = c->olen = 0;
    return 0;
}

static int on_readable(int ep, conn_t *c) {
    grow(&c->in, &c->cap, c->len + 65536);
    ssize_t r = read(c->fd, c->in + c->len, c->cap - c->len);
    if (r == 0) return -1;
    if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->len += (size_t)r;
    size_t off = 0;
    while (c->len - off >= 4) {
        uint32_t l = (uint32_t)c->in[off] << 24 | (uint32_t)c->in[off + 1] << 16 | (uint32_t)c->in[off + 2] << 8 | c->in[off + 3];
        if (l > (16u << 20)) return -1;
        if (c->len - off < 4 + (size_t)l) break;
        off += 4 + l;
    }
    if (off) {
        grow(&c->out, &c->ocap, c->olen + off);
        memcpy(c->out + c->olen, c->in, off);
        c->olen += off;
        memmove(c->in, c->in + off, c->len - off);
        c->len -= off;
        return flush_out(ep, c);
    }
    return 0;
}

static int listen_fd = -1, next_loop = 0;

static void accept_all(void) {
    int fd;
    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(loops[next_loop], EPOLL_CTL_ADD, fd, &ev);
        next_loop = (next_loop + 1) % nloops;
    }
}

static void *loop_main(void *arg) {
    int ep = *(int *)arg;
    struct epoll_event evs[256];
    while (!stopping) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) { accept_all(); continue; } /* the listener, on loop 0 only */
            int bad = 0;
            if (evs[i].events & EPOLLOUT) {
                bad = flush_out(ep, c);
                if (!bad && c->olen == 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                bad = on_readable(ep, c);
            }
            if (bad) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close_conn(c);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nloops = atoi(argv[++i]);
        else { fprintf(stderr, "usage: echo_server --socket PATH [--threads N]\n"); return 2; }
    }
    if (!path || nloops < 1) { fprintf(stderr, "usage: echo_server --socket PATH [--threads N]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) { fprintf(stderr, "socket path too long\n"); return 1; }
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) { perror("bind/listen"); return 1; }

    loops = calloc((size_t)nloops, sizeof(int));
    for (int i = 0; i < nloops; i++) loops[i] = epoll_create1(EPOLL_CLOEXEC);
    pthread_t *threads = calloc((size_t)nloops, sizeof(pthread_t));
    /* Loop 0 runs on the main thread together with the listener; the others on their own threads. */
    for (int i = 1; i < nloops; i++) pthread_create(&threads[i], NULL, loop_main, &loops[i]);

    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(loops[0], EPOLL_CTL_ADD, lfd, &lev);
    listen_fd = lfd;
    loop_main(&loops[0]);
    for (int i = 1; i < nloops; i++) pthread_join(threads[i], NULL);
    unlink(path);
    return 0;
}
