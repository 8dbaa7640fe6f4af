#ifndef TOLLGATE_CEPOLL_H
#define TOLLGATE_CEPOLL_H
// The few Linux calls the api socket's epoll loop needs that Swift's Glibc module does not export (sys/epoll.h,
// sys/eventfd.h, accept4 and the peer-credential options need _GNU_SOURCE). Thin wrappers, no policy.
#include <stdint.h>

// One readiness report: the registration's 64-bit tag and its event bits (struct epoll_event is packed on x86_64;
// this layout is not, so Swift reads it plainly).
typedef struct {
    uint64_t tag;
    uint32_t events;
} tollgate_epoll_event;

// The event bits, as plain constants.
extern const uint32_t TOLLGATE_EPOLLIN, TOLLGATE_EPOLLOUT, TOLLGATE_EPOLLERR, TOLLGATE_EPOLLHUP, TOLLGATE_EPOLLRDHUP,
    TOLLGATE_EPOLLEXCLUSIVE;

// epoll_create1(EPOLL_CLOEXEC).
int tollgate_epoll_create(void);
// EPOLL_CTL_ADD / MOD / DEL with the tag in data.u64; 0 or -1 and errno.
int tollgate_epoll_add(int epfd, int fd, uint32_t events, uint64_t tag);
int tollgate_epoll_modify(int epfd, int fd, uint32_t events, uint64_t tag);
int tollgate_epoll_remove(int epfd, int fd);
// epoll_wait, copying up to `max` reports (at most 256) into `out`; the count, or -1 and errno (EINTR included).
int tollgate_epoll_wait(int epfd, tollgate_epoll_event *out, int max, int timeout_ms);
// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int tollgate_eventfd(void);
// accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC).
int tollgate_accept(int fd);
// SO_PEERCRED: 0 and the peer's pid, uid, gid, or -1 and errno.
int tollgate_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);
// SO_PEERGROUPS: the number of supplementary groups written to `gids` (at most `max`), or -1 and errno (ERANGE
// when the peer has more).
int tollgate_peer_groups(int fd, uint32_t *gids, int max);
// The number of CPUs this thread may run on (sched_getaffinity: taskset, systemd's CPUAffinity=, a cpuset), or the
// online CPUs when that fails; at least 1.
int tollgate_allowed_cpus(void);
#endif
