#define _GNU_SOURCE
#include "CEpoll.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <stddef.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

const uint32_t TOLLGATE_EPOLLIN = EPOLLIN, TOLLGATE_EPOLLOUT = EPOLLOUT, TOLLGATE_EPOLLERR = EPOLLERR,
    TOLLGATE_EPOLLHUP = EPOLLHUP, TOLLGATE_EPOLLRDHUP = EPOLLRDHUP, TOLLGATE_EPOLLEXCLUSIVE = EPOLLEXCLUSIVE;

int tollgate_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static int control(int epfd, int op, int fd, uint32_t events, uint64_t tag) {
    struct epoll_event event = {.events = events, .data.u64 = tag};
    return epoll_ctl(epfd, op, fd, &event);
}

int tollgate_epoll_add(int epfd, int fd, uint32_t events, uint64_t tag) { return control(epfd, EPOLL_CTL_ADD, fd, events, tag); }
int tollgate_epoll_modify(int epfd, int fd, uint32_t events, uint64_t tag) { return control(epfd, EPOLL_CTL_MOD, fd, events, tag); }
int tollgate_epoll_remove(int epfd, int fd) { return control(epfd, EPOLL_CTL_DEL, fd, 0, 0); }

int tollgate_epoll_wait(int epfd, tollgate_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event events[256];
    if (max > 256) max = 256;
    int count = epoll_wait(epfd, events, max, timeout_ms);
    for (int i = 0; i < count; i++) {
        out[i].tag = events[i].data.u64;
        out[i].events = events[i].events;
    }
    return count;
}

int tollgate_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int tollgate_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int tollgate_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int tollgate_peer_groups(int fd, uint32_t *gids, int max) {
    socklen_t length = (socklen_t)(max * sizeof(uint32_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &length) != 0) return -1;
    return (int)(length / sizeof(uint32_t));
}

int tollgate_allowed_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
