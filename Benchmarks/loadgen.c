/*
 * loadgen: the one load generator used for every system in scripts/bench.sh, so that all of them are measured
 * the same way.
 *
 * It opens C connections to a Unix domain socket, keeps D requests in flight on each (pipelining), and runs for a
 * given duration (after a warm-up) or a given number of requests. Every system answers a connection's requests
 * in order, so each connection keeps a FIFO of send times; a request's latency is the time from the moment it
 * was queued for sending to the moment its response was parsed. Latencies go into a log-linear histogram
 * (64 sub-buckets per power of two, < 1.6 % error). Single-threaded, epoll, level-triggered; a wake-up reads every
 * response available on a connection and sends the replacements in one write.
 *
 * Load modes (one result line `RESULT key=value ...` on stdout; exit 1 on errors):
 *   echo      64-byte length-prefixed frames; the same bytes must come back (raw socket limit, fsync baseline)
 *   redis     --op check: EVALSHA <sha> 1 tok:<sha256 hex of token> <now_ms> read requests 1
 *             --op incr : INCR ctr:<connection>
 *   tollgate  --op check (CHECK, no meter), check-cost (meter "requests" cost 1), ping (PING),
 *             mixed (95 % check-cost, 4 % METER with a unique idempotency key, 1 % REVOKE by secret of a token
 *             from --revoke-file, a separate throwaway pool), meter (durable METER only)
 * Set-up modes:
 *   preload        over the tollgate admin socket: LICENSE_PUT lic_0..lic_{L-1} on --plan, then ISSUE N tokens
 *                  (scopes read,write, expiring in a year) round-robin over the licenses, written one secret a
 *                  line to --out; then --revoke-count more to --revoke-out (the throwaway pool for REVOKE).
 *   redis-preload  HSET tok:<sha256 hex> license expires_at revoked scopes for every secret of --tokens-file
 *                  (and --revoke-file).
 *
 * Build: gcc -O2 -o loadgen loadgen.c   (no third-party libraries)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------ util */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_state = 88172645463325252ull;
static inline uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) die("out of memory");
    return p;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, (uint32_t)v); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* ------------------------------------------------------------------------------------------------ sha256 */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
    0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
    0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64], a, b, c, d, e, f, g, hh;
    for (int i = 0; i < 16; i++) w[i] = get32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_hex(const char *msg, size_t len, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t block[128];
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha256_block(h, (const uint8_t *)msg + i);
    size_t rest = len - i;
    memset(block, 0, sizeof block);
    memcpy(block, msg + i, rest);
    block[rest] = 0x80;
    size_t total = rest + 9 <= 64 ? 64 : 128;
    put64(block + total - 8, (uint64_t)len * 8);
    sha256_block(h, block);
    if (total == 128) sha256_block(h, block + 64);
    for (int k = 0; k < 8; k++) sprintf(out + 8 * k, "%08x", h[k]);
    out[64] = 0;
}

/* ------------------------------------------------------------------------------------------------ histogram */

#define HSUB 64 /* sub-buckets per power of two */
#define HBUCKETS (HSUB + 58 * (HSUB / 2))
typedef struct {
    uint64_t counts[HBUCKETS];
    uint64_t n, max, sum;
} hist_t;

static inline int hidx(uint64_t v) {
    if (v < HSUB) return (int)v;
    int msb = 63 - __builtin_clzll(v); /* >= 6 */
    int shift = msb - 5;
    return HSUB + (shift - 1) * (HSUB / 2) + (int)((v >> shift) - HSUB / 2);
}
static uint64_t hvalue(int i) { /* the middle of bucket i */
    if (i < HSUB) return (uint64_t)i;
    int shift = (i - HSUB) / (HSUB / 2) + 1;
    uint64_t top = (uint64_t)((i - HSUB) % (HSUB / 2) + HSUB / 2);
    return (top << shift) + ((1ull << shift) >> 1);
}
static inline void hrecord(hist_t *h, uint64_t v) {
    h->counts[hidx(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}
static double hpct(const hist_t *h, double p) { /* microseconds */
    if (!h->n) return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->n);
    if (want >= h->n) want = h->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += h->counts[i];
        if (seen > want) return (double)hvalue(i) / 1000.0;
    }
    return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------------------------------------------ options */

enum { M_ECHO, M_REDIS, M_TOLLGATE, M_PRELOAD, M_REDIS_PRELOAD };
enum { OP_CHECK, OP_CHECK_COST, OP_PING, OP_MIXED, OP_METER, OP_INCR };
enum { K_CHECK, K_METER, K_REVOKE, K_PING, K_ECHO, K_REDIS };

static struct {
    int mode, op;
    const char *socket, *tokens_file, *revoke_file, *sha, *out, *revoke_out, *plan, *label;
    int conns, depth;
    double duration, warmup;
    long requests;
    long licenses, count, revoke_count;
    long revoke_start;
    int echo_size;
} opt = {.conns = 1, .depth = 1, .duration = 3, .warmup = 0.3, .licenses = 1000, .count = 10000,
         .plan = "bench", .label = "", .echo_size = 64};

static const char *const op_names[] = {"check", "check-cost", "ping", "mixed", "meter", "incr"};

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --socket PATH [options]\n"
            "  MODE: echo | redis | tollgate | preload | redis-preload\n"
            "  -c N            connections (default 1)\n"
            "  -d N            requests in flight per connection (default 1)\n"
            "  --duration S    measured seconds (default 3)       --warmup S   unmeasured seconds first (default 0.3)\n"
            "  --requests N    stop after N responses instead of a duration\n"
            "  --op OP         tollgate: check | check-cost | ping | mixed | meter; redis: check | incr\n"
            "  --tokens-file F secrets, one a line (tollgate, redis check, redis-preload)\n"
            "  --revoke-file F throwaway secrets for REVOKE in the mixed op   --revoke-start K first one to use\n"
            "  --sha SHA       redis: the SHA1 of the loaded check script\n"
            "  --echo-size B   echo: frame size in bytes including the 4-byte prefix (default 64)\n"
            "  --label TEXT    copied into the RESULT line\n"
            "  preload: --licenses L --count N --plan P --out FILE [--revoke-count M --revoke-out FILE]\n");
    exit(2);
}

/* ------------------------------------------------------------------------------------------------ tokens */

typedef struct {
    char **s;
    uint16_t *len;
    char **key; /* redis: "tok:<hex>" */
    long n;
} tokens_t;

static tokens_t tokens, revoke_tokens;

static void load_tokens(tokens_t *t, const char *path, int with_keys) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    long cap = 1024;
    t->s = xmalloc(sizeof(char *) * cap);
    t->len = xmalloc(sizeof(uint16_t) * cap);
    t->n = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        size_t l = strcspn(line, "\r\n");
        if (!l) continue;
        line[l] = 0;
        if (t->n == cap) {
            cap *= 2;
            t->s = realloc(t->s, sizeof(char *) * cap);
            t->len = realloc(t->len, sizeof(uint16_t) * cap);
            if (!t->s || !t->len) die("out of memory");
        }
        t->s[t->n] = strdup(line);
        t->len[t->n] = (uint16_t)l;
        t->n++;
    }
    fclose(f);
    if (!t->n) die("%s holds no tokens", path);
    if (with_keys) {
        t->key = xmalloc(sizeof(char *) * t->n);
        for (long i = 0; i < t->n; i++) {
            char hex[65];
            sha256_hex(t->s[i], t->len[i], hex);
            t->key[i] = xmalloc(69);
            memcpy(t->key[i], "tok:", 4);
            memcpy(t->key[i] + 4, hex, 65);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ buffers */

typedef struct {
    uint8_t *p;
    size_t len, off, cap;
} buf_t;

static inline void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    if (b->off) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("out of memory");
    b->cap = cap;
}
static inline uint8_t *buf_put(buf_t *b, const void *data, size_t n) {
    buf_reserve(b, n);
    uint8_t *at = b->p + b->len;
    if (data) memcpy(at, data, n);
    b->len += n;
    return at;
}

/* ------------------------------------------------------------------------------------------------ request encoding */

static uint32_t next_request_id = 1;
static uint64_t idem_counter = 0;
static char idem_prefix[64];

/* Tollgate frame: returns the offset of the frame start so the caller can patch the length. */
static size_t tg_begin(buf_t *b, uint8_t opcode, uint32_t rid) {
    size_t start = b->len;
    uint8_t *h = buf_put(b, NULL, 16);
    put32(h, 0);
    h[4] = 0x54; h[5] = 0x47; h[6] = 1; h[7] = opcode;
    h[8] = 0; h[9] = 0; h[10] = 0; h[11] = 0;
    put32(h + 12, rid);
    return start;
}
static void tg_end(buf_t *b, size_t start) { put32(b->p + start, (uint32_t)(b->len - start - 4)); }
static void tg_str(buf_t *b, const char *s, size_t n) {
    uint8_t *p = buf_put(b, NULL, 2 + n);
    put16(p, (uint16_t)n);
    memcpy(p + 2, s, n);
}
static void tg_u8(buf_t *b, uint8_t v) { buf_put(b, &v, 1); }
static void tg_u16(buf_t *b, uint16_t v) { put16(buf_put(b, NULL, 2), v); }
static void tg_u64(buf_t *b, uint64_t v) { put64(buf_put(b, NULL, 8), v); }
#define TG_LIT(b, s) tg_str((b), (s), sizeof(s) - 1)

static void enc_check(buf_t *b, uint32_t rid, long t, int cost) {
    size_t st = tg_begin(b, 0x10, rid);
    tg_str(b, tokens.s[t], tokens.len[t]);
    tg_u16(b, 1);
    TG_LIT(b, "read");
    if (cost) { TG_LIT(b, "requests"); tg_u64(b, 1); }
    else { TG_LIT(b, ""); tg_u64(b, 0); }
    tg_u16(b, 0); /* features */
    tg_u8(b, 0);  /* options */
    tg_end(b, st);
}
static void enc_meter(buf_t *b, uint32_t rid, long t) {
    size_t st = tg_begin(b, 0x11, rid);
    tg_str(b, tokens.s[t], tokens.len[t]);
    TG_LIT(b, "bytes");
    tg_u64(b, 1);
    char key[96];
    int n = snprintf(key, sizeof key, "%s-%" PRIu64, idem_prefix, idem_counter++);
    tg_str(b, key, (size_t)n);
    tg_end(b, st);
}
static long revoke_next;
static void enc_revoke(buf_t *b, uint32_t rid) {
    long t = revoke_next++ % revoke_tokens.n;
    size_t st = tg_begin(b, 0x12, rid);
    tg_u8(b, 0);
    tg_str(b, revoke_tokens.s[t], revoke_tokens.len[t]);
    TG_LIT(b, "bench");
    TG_LIT(b, ""); /* actor */
    tg_end(b, st);
}
static void enc_ping(buf_t *b, uint32_t rid) { tg_end(b, tg_begin(b, 0x02, rid)); }

/* Echo frame: a PING-shaped header with the request id, padded to echo_size bytes. */
static void enc_echo(buf_t *b, uint32_t rid) {
    size_t st = tg_begin(b, 0x02, rid);
    size_t pad = (size_t)opt.echo_size - 16;
    uint8_t *p = buf_put(b, NULL, pad);
    for (size_t i = 0; i < pad; i++) p[i] = (uint8_t)(rid + i);
    tg_end(b, st);
}

/* RESP bulk array */
static void resp_cmd(buf_t *b, int argc, const char **argv, const size_t *lens) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "*%d\r\n", argc);
    buf_put(b, tmp, (size_t)n);
    for (int i = 0; i < argc; i++) {
        n = snprintf(tmp, sizeof tmp, "$%zu\r\n", lens[i]);
        buf_put(b, tmp, (size_t)n);
        buf_put(b, argv[i], lens[i]);
        buf_put(b, "\r\n", 2);
    }
}
static char now_ms_text[24];
static size_t now_ms_len;
static void enc_redis_check(buf_t *b, long t) {
    const char *argv[] = {"EVALSHA", opt.sha, "1", tokens.key[t], now_ms_text, "read", "requests", "1"};
    size_t lens[] = {7, strlen(opt.sha), 1, 68, now_ms_len, 4, 8, 1};
    resp_cmd(b, 8, argv, lens);
}
static void enc_redis_incr(buf_t *b, int conn) {
    char key[32];
    int n = snprintf(key, sizeof key, "ctr:%d", conn);
    const char *argv[] = {"INCR", key};
    size_t lens[] = {4, (size_t)n};
    resp_cmd(b, 2, argv, lens);
}

/* ------------------------------------------------------------------------------------------------ response parsing */

/* One complete RESP reply at p: its length, 0 if incomplete, -1 if malformed. */
static long resp_one(const uint8_t *p, size_t n) {
    if (n < 3) return 0;
    const uint8_t *e = memchr(p, '\n', n);
    if (!e) return 0;
    size_t line = (size_t)(e - p) + 1;
    switch (p[0]) {
    case '+': case '-': case ':': return (long)line;
    case '$': {
        long l = strtol((const char *)p + 1, NULL, 10);
        if (l < 0) return (long)line;
        if (n < line + (size_t)l + 2) return 0;
        return (long)(line + (size_t)l + 2);
    }
    case '*': {
        long k = strtol((const char *)p + 1, NULL, 10);
        size_t off = line;
        for (long i = 0; i < k; i++) {
            long r = resp_one(p + off, n - off);
            if (r <= 0) return r;
            off += (size_t)r;
        }
        return (long)off;
    }
    default: return -1;
    }
}

/* ------------------------------------------------------------------------------------------------ connections */

typedef struct {
    int fd, index;
    buf_t in, out;
    uint64_t *ts; /* FIFO of send times */
    uint32_t *rid;
    uint8_t *kind;
    unsigned head, tail, mask, inflight;
    int want_out;
} conn_t;

static int connect_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) die("socket path too long: %s", path);
    strcpy(a.sun_path, path);
    for (int attempt = 0;; attempt++) {
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) break;
        if ((errno == EAGAIN || errno == ECONNREFUSED) && attempt < 200) { usleep(10000); continue; }
        die("connect %s: %s", path, strerror(errno));
    }
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    return fd;
}

static struct {
    hist_t all, check;
    uint64_t done, measured, errors, denied, checks, meters, revokes, revoke_notfound, sent;
    int error_printed;
} st;

static void report_error(const char *fmt, ...) {
    st.errors++;
    if (st.error_printed++ >= 5) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* Queue one request of the configured load on c. */
static inline void send_one(conn_t *c, uint64_t now) {
    uint32_t rid = next_request_id++;
    uint8_t kind;
    switch (opt.mode) {
    case M_ECHO: enc_echo(&c->out, rid); kind = K_ECHO; break;
    case M_REDIS:
        if (opt.op == OP_INCR) enc_redis_incr(&c->out, c->index);
        else enc_redis_check(&c->out, (long)(rng() % (uint64_t)tokens.n));
        kind = K_REDIS;
        break;
    default:
        switch (opt.op) {
        case OP_PING: enc_ping(&c->out, rid); kind = K_PING; break;
        case OP_METER: enc_meter(&c->out, rid, (long)(rng() % (uint64_t)tokens.n)); kind = K_METER; break;
        case OP_MIXED: {
            uint64_t r = rng() % 100;
            if (r < 95) { enc_check(&c->out, rid, (long)(rng() % (uint64_t)tokens.n), 1); kind = K_CHECK; }
            else if (r < 99) { enc_meter(&c->out, rid, (long)(rng() % (uint64_t)tokens.n)); kind = K_METER; }
            else { enc_revoke(&c->out, rid); kind = K_REVOKE; }
            break;
        }
        default: enc_check(&c->out, rid, (long)(rng() % (uint64_t)tokens.n), opt.op == OP_CHECK_COST); kind = K_CHECK;
        }
    }
    unsigned slot = c->tail++ & c->mask;
    c->ts[slot] = now;
    c->rid[slot] = rid;
    c->kind[slot] = kind;
    c->inflight++;
    st.sent++;
}

/* Parses every complete response in c->in. Returns how many completed. */
static unsigned parse_responses(conn_t *c, uint64_t now, int measuring) {
    unsigned completed = 0;
    for (;;) {
        uint8_t *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        size_t flen;
        if (opt.mode == M_REDIS) {
            long r = resp_one(p, avail);
            if (r < 0) die("malformed RESP reply from the server");
            if (r == 0) break;
            flen = (size_t)r;
        } else {
            if (avail < 4) break;
            flen = 4 + get32(p);
            if (flen < 16 || flen > (16u << 20)) die("bad frame length %zu from the server", flen);
            if (avail < flen) break;
        }
        if (!c->inflight) die("a response arrived for no request");
        unsigned slot = c->head++ & c->mask;
        c->inflight--;
        uint8_t kind = c->kind[slot];
        uint32_t rid = c->rid[slot];
        if (opt.mode == M_REDIS) {
            if (p[0] == ':') {
                long v = strtol((const char *)p + 1, NULL, 10);
                if (opt.op == OP_CHECK && v <= 0) st.denied++;
            } else report_error("redis replied %.*s", (int)(flen > 120 ? 120 : flen - 2), p);
            if (opt.op == OP_CHECK) st.checks++;
        } else if (opt.mode == M_ECHO) {
            if (flen != (size_t)opt.echo_size || get32(p + 12) != rid || p[7] != 0x02) report_error("echo frame mismatch");
            else
                for (size_t i = 16; i < flen; i++)
                    if (p[i] != (uint8_t)(rid + (i - 16))) { report_error("echo payload mismatch"); break; }
        } else {
            if (p[4] != 0x54 || p[5] != 0x47 || !(p[8] & 1)) die("not a Tollgate response frame");
            uint8_t status = p[9];
            if (get32(p + 12) != rid) report_error("response for request %u, expected %u", get32(p + 12), rid);
            switch (kind) {
            case K_CHECK:
                st.checks++;
                if (status == 1) {
                    st.denied++;
                    if (st.denied <= 3) fprintf(stderr, "loadgen: check denied, reason %u\n", flen > 17 ? p[17] : 255);
                } else if (status != 0) report_error("CHECK answered status %u", status);
                break;
            case K_METER:
                st.meters++;
                if (status != 0) report_error("METER answered status %u", status);
                break;
            case K_REVOKE:
                st.revokes++;
                if (status == 8) st.revoke_notfound++;
                else if (status != 0) report_error("REVOKE answered status %u", status);
                break;
            default:
                if (status != 0) report_error("PING answered status %u", status);
            }
        }
        c->in.off += flen;
        completed++;
        st.done++;
        if (measuring) {
            uint64_t lat = now - c->ts[slot];
            hrecord(&st.all, lat);
            if (kind == K_CHECK) hrecord(&st.check, lat);
            st.measured++;
        }
    }
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    return completed;
}

static void flush_out(conn_t *c, int ep) {
    while (c->out.off < c->out.len) {
        ssize_t w = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w > 0) { c->out.off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        die("write: %s (did the server close the connection?)", w < 0 ? strerror(errno) : "short write");
    }
    if (c->out.off == c->out.len) c->out.off = c->out.len = 0;
    int want = c->out.len > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
}

static void update_now_text(void) {
    now_ms_len = (size_t)snprintf(now_ms_text, sizeof now_ms_text, "%" PRId64, wall_ms());
}

static int run_load(void) {
    int C = opt.conns, D = opt.depth;
    conn_t *cs = calloc((size_t)C, sizeof(conn_t));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    unsigned cap = 1;
    while (cap < (unsigned)D) cap <<= 1;
    for (int i = 0; i < C; i++) {
        conn_t *c = &cs[i];
        c->fd = connect_unix(opt.socket);
        c->index = i;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->ts = xmalloc(sizeof(uint64_t) * cap);
        c->rid = xmalloc(sizeof(uint32_t) * cap);
        c->kind = xmalloc(cap);
        c->mask = cap - 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    }
    update_now_text();
    uint64_t start = now_ns();
    uint64_t warm_end = start + (uint64_t)(opt.warmup * 1e9);
    uint64_t deadline = opt.requests > 0 ? UINT64_MAX : warm_end + (uint64_t)(opt.duration * 1e9);
    long to_send = opt.requests > 0 ? opt.requests : -1;
    for (int i = 0; i < C; i++) {
        for (int k = 0; k < D && to_send != 0; k++) {
            send_one(&cs[i], start);
            if (to_send > 0) to_send--;
        }
        flush_out(&cs[i], ep);
    }
    struct epoll_event evs[256];
    uint64_t last_text = start;
    uint64_t end = start;
    int measuring_all = opt.requests > 0;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) break;
        if (opt.requests > 0 && st.done >= (uint64_t)opt.requests) break;
        long timeout_ms = deadline == UINT64_MAX ? 10000 : (long)((deadline - now) / 1000000) + 1;
        int n = epoll_wait(ep, evs, 256, (int)timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        if (n == 0 && deadline == UINT64_MAX) die("no response for 10 s");
        now = now_ns();
        if (opt.mode == M_REDIS && now - last_text > 1000000) { update_now_text(); last_text = now; }
        int measuring = measuring_all || (now >= warm_end && now <= deadline);
        int sending = now < deadline;
        for (int e = 0; e < n; e++) {
            conn_t *c = evs[e].data.ptr;
            if (evs[e].events & EPOLLIN) {
                buf_reserve(&c->in, 65536);
                ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
                if (r == 0) die("the server closed connection %d", c->index);
                if (r < 0) {
                    if (errno != EAGAIN && errno != EINTR) die("read: %s", strerror(errno));
                } else {
                    c->in.len += (size_t)r;
                    unsigned done = parse_responses(c, now, measuring);
                    if (sending)
                        for (unsigned k = 0; k < done && to_send != 0; k++) {
                            send_one(c, now);
                            if (to_send > 0) to_send--;
                        }
                }
            } else if (evs[e].events & (EPOLLERR | EPOLLHUP)) die("connection %d failed", c->index);
            flush_out(c, ep);
        }
        end = now;
    }
    double secs = opt.requests > 0 ? (double)(end - start) / 1e9 : opt.duration;
    double rps = (double)st.measured / secs;
    const char *mode = opt.mode == M_ECHO ? "echo" : opt.mode == M_REDIS ? "redis" : "tollgate";
    printf("RESULT mode=%s op=%s c=%d d=%d rps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f "
           "n=%" PRIu64 " errors=%" PRIu64 " denied=%" PRIu64 " checks=%" PRIu64 " meters=%" PRIu64 " revokes=%" PRIu64
           " revoke_notfound=%" PRIu64 " check_p99_us=%.1f label=%s\n",
           mode, opt.mode == M_ECHO ? "echo" : op_names[opt.op], C, D, rps, hpct(&st.all, 50), hpct(&st.all, 99),
           hpct(&st.all, 99.9), (double)st.all.max / 1000.0, st.all.n ? (double)st.all.sum / (double)st.all.n / 1000.0 : 0,
           st.measured, st.errors, st.denied, st.checks, st.meters, st.revokes, st.revoke_notfound, hpct(&st.check, 99),
           opt.label[0] ? opt.label : "-");
    fflush(stdout);
    if (st.measured == 0) { fprintf(stderr, "loadgen: no response was measured\n"); return 1; }
    return st.errors || (st.denied && opt.op != OP_MIXED) ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------------ preload */

/* Sends the requests produced by `encode(i, buf)` for i in [0, n) over one blocking connection, with up to
   `window` in flight, and gives each complete response to `on_response(i, frame, len)`. */
typedef void (*encode_fn)(long i, buf_t *b);
typedef void (*response_fn)(long i, const uint8_t *p, size_t len);

static void pipeline(int fd, long n, int window, int resp, encode_fn encode, response_fn on_response) {
    buf_t out = {0}, in = {0};
    long sent = 0, received = 0;
    while (received < n) {
        out.len = out.off = 0;
        while (sent < n && sent - received < window) encode(sent++, &out);
        size_t off = 0;
        while (off < out.len) {
            ssize_t w = write(fd, out.p + off, out.len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) die("write: %s", strerror(errno));
            off += (size_t)w;
        }
        long target = sent;
        while (received < target) {
            buf_reserve(&in, 65536);
            ssize_t r = read(fd, in.p + in.len, in.cap - in.len);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) die("read: %s", r ? strerror(errno) : "the server closed the connection");
            in.len += (size_t)r;
            for (;;) {
                uint8_t *p = in.p + in.off;
                size_t avail = in.len - in.off, flen;
                if (resp) {
                    long l = resp_one(p, avail);
                    if (l < 0) die("malformed RESP reply");
                    if (!l) break;
                    flen = (size_t)l;
                } else {
                    if (avail < 4) break;
                    flen = 4 + get32(p);
                    if (avail < flen) break;
                }
                on_response(received++, p, flen);
                in.off += flen;
            }
            if (in.off == in.len) in.off = in.len = 0;
        }
    }
    free(out.p);
    free(in.p);
}

static int64_t preload_expiry;
static FILE *preload_out;
static long issue_base;

static void enc_license_put(long i, buf_t *b) {
    char id[32];
    int n = snprintf(id, sizeof id, "lic_%ld", i);
    size_t st0 = tg_begin(b, 0x21, (uint32_t)i + 1);
    tg_str(b, id, (size_t)n);
    TG_LIT(b, "bench customer");
    tg_str(b, opt.plan, strlen(opt.plan));
    tg_u8(b, 0);     /* status active */
    tg_u64(b, 0);    /* valid_until */
    tg_u64(b, 0);    /* valid_from */
    tg_u64(b, 0);    /* trial_ends_at */
    TG_LIT(b, "");   /* org */
    TG_LIT(b, "");   /* project */
    tg_u8(b, 1);     /* billing_anchor_day */
    tg_end(b, st0);
}
static void check_ok(long i, const uint8_t *p, size_t len) {
    if (len < 16 || p[9] != 0) {
        size_t ml = len >= 18 ? get16(p + 16) : 0;
        die("admin request %ld answered status %u: %.*s", i, len >= 10 ? p[9] : 255, (int)(ml <= len - 18 ? ml : 0), p + 18);
    }
}
static void enc_issue(long i, buf_t *b) {
    long j = issue_base + i;
    char lic[32], subject[32];
    int nl = snprintf(lic, sizeof lic, "lic_%ld", j % opt.licenses);
    int ns = snprintf(subject, sizeof subject, "svc-%ld", j);
    size_t st0 = tg_begin(b, 0x20, (uint32_t)i + 1);
    tg_str(b, lic, (size_t)nl);
    tg_str(b, subject, (size_t)ns);
    tg_u16(b, 2);
    TG_LIT(b, "read");
    TG_LIT(b, "write");
    tg_u64(b, 0);
    tg_u64(b, (uint64_t)preload_expiry);
    tg_u16(b, 0);
    tg_u8(b, 0);
    tg_end(b, st0);
}
static void on_issue(long i, const uint8_t *p, size_t len) {
    check_ok(i, p, len);
    if (len < 18) die("short ISSUE response");
    size_t sl = get16(p + 16);
    if (18 + sl > len) die("bad ISSUE response");
    fwrite(p + 18, 1, sl, preload_out);
    fputc('\n', preload_out);
}

static void issue_to(const char *path, long count) {
    preload_out = fopen(path, "w");
    if (!preload_out) die("cannot write %s: %s", path, strerror(errno));
    int fd = connect_unix(opt.socket);
    pipeline(fd, count, 256, 0, enc_issue, on_issue);
    close(fd);
    if (fclose(preload_out)) die("cannot write %s", path);
    issue_base += count;
}

static int run_preload(void) {
    if (!opt.out) die("preload needs --out FILE");
    uint64_t t0 = now_ns();
    preload_expiry = wall_ms() + 365ll * 86400 * 1000;
    int fd = connect_unix(opt.socket);
    pipeline(fd, opt.licenses, 256, 0, enc_license_put, check_ok);
    close(fd);
    issue_to(opt.out, opt.count);
    if (opt.revoke_count > 0) {
        if (!opt.revoke_out) die("--revoke-count needs --revoke-out FILE");
        issue_to(opt.revoke_out, opt.revoke_count);
    }
    fprintf(stderr, "loadgen: preloaded %ld licenses and %ld + %ld tokens in %.2f s\n", opt.licenses, opt.count,
            opt.revoke_count, (double)(now_ns() - t0) / 1e9);
    return 0;
}

static tokens_t *rp_tokens;
static void enc_hset(long i, buf_t *b) {
    char lic[32], exp[24];
    int nl = snprintf(lic, sizeof lic, "lic_%ld", i % opt.licenses);
    int ne = snprintf(exp, sizeof exp, "%" PRId64, preload_expiry);
    const char *argv[] = {"HSET", rp_tokens->key[i], "license", lic, "expires_at", exp, "revoked", "0", "scopes", "read,write"};
    size_t lens[] = {4, 68, 7, (size_t)nl, 10, (size_t)ne, 7, 1, 6, 10};
    resp_cmd(b, 10, argv, lens);
}
static void check_resp(long i, const uint8_t *p, size_t len) {
    if (p[0] == '-') die("redis preload %ld: %.*s", i, (int)len - 2, p);
}
static int run_redis_preload(void) {
    uint64_t t0 = now_ns();
    preload_expiry = wall_ms() + 365ll * 86400 * 1000;
    int fd = connect_unix(opt.socket);
    rp_tokens = &tokens;
    pipeline(fd, tokens.n, 512, 1, enc_hset, check_resp);
    long extra = 0;
    if (opt.revoke_file) {
        rp_tokens = &revoke_tokens;
        pipeline(fd, revoke_tokens.n, 512, 1, enc_hset, check_resp);
        extra = revoke_tokens.n;
    }
    close(fd);
    fprintf(stderr, "loadgen: loaded %ld + %ld token hashes into redis in %.2f s\n", tokens.n, extra,
            (double)(now_ns() - t0) / 1e9);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ main */

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "loadgen: watchdog: the run took far longer than asked; giving up\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(3);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "echo")) opt.mode = M_ECHO;
    else if (!strcmp(m, "redis")) opt.mode = M_REDIS;
    else if (!strcmp(m, "tollgate")) opt.mode = M_TOLLGATE;
    else if (!strcmp(m, "preload")) opt.mode = M_PRELOAD;
    else if (!strcmp(m, "redis-preload")) opt.mode = M_REDIS_PRELOAD;
    else usage();
    const char *op = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define ARG() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "--socket")) opt.socket = ARG();
        else if (!strcmp(a, "-c")) opt.conns = atoi(ARG());
        else if (!strcmp(a, "-d")) opt.depth = atoi(ARG());
        else if (!strcmp(a, "--duration")) opt.duration = atof(ARG());
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(ARG());
        else if (!strcmp(a, "--requests")) opt.requests = atol(ARG());
        else if (!strcmp(a, "--op")) op = ARG();
        else if (!strcmp(a, "--tokens-file")) opt.tokens_file = ARG();
        else if (!strcmp(a, "--revoke-file")) opt.revoke_file = ARG();
        else if (!strcmp(a, "--revoke-start")) opt.revoke_start = atol(ARG());
        else if (!strcmp(a, "--sha")) opt.sha = ARG();
        else if (!strcmp(a, "--echo-size")) opt.echo_size = atoi(ARG());
        else if (!strcmp(a, "--label")) opt.label = ARG();
        else if (!strcmp(a, "--licenses")) opt.licenses = atol(ARG());
        else if (!strcmp(a, "--count")) opt.count = atol(ARG());
        else if (!strcmp(a, "--plan")) opt.plan = ARG();
        else if (!strcmp(a, "--out")) opt.out = ARG();
        else if (!strcmp(a, "--revoke-count")) opt.revoke_count = atol(ARG());
        else if (!strcmp(a, "--revoke-out")) opt.revoke_out = ARG();
        else usage();
    }
    if (!opt.socket) usage();
    if (opt.conns < 1 || opt.depth < 1 || opt.echo_size < 16 || opt.licenses < 1) usage();
    signal(SIGPIPE, SIG_IGN);
    rng_state ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ now_ns();
    if (!rng_state) rng_state = 1;
    snprintf(idem_prefix, sizeof idem_prefix, "lg%d-%" PRIu64, (int)getpid(), now_ns());
    /* Watchdog: a run never takes much longer than asked. */
    double limit = opt.mode == M_PRELOAD || opt.mode == M_REDIS_PRELOAD || opt.requests > 0 ? 600 : opt.warmup + opt.duration + 20;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)limit);

    if (opt.mode == M_PRELOAD) return run_preload();
    if (opt.mode == M_REDIS_PRELOAD) {
        if (!opt.tokens_file) die("redis-preload needs --tokens-file");
        load_tokens(&tokens, opt.tokens_file, 1);
        if (opt.revoke_file) load_tokens(&revoke_tokens, opt.revoke_file, 1);
        return run_redis_preload();
    }
    if (opt.mode == M_ECHO) opt.op = OP_PING;
    else {
        if (!op) op = "check";
        int found = -1;
        for (int k = 0; k < 6; k++)
            if (!strcmp(op, op_names[k])) found = k;
        if (found < 0) die("unknown --op %s", op);
        opt.op = found;
        if (opt.mode == M_REDIS && opt.op != OP_CHECK && opt.op != OP_INCR) die("redis serves --op check or incr");
        if (opt.mode == M_TOLLGATE && opt.op == OP_INCR) die("tollgate has no --op incr");
        int need_tokens = opt.op != OP_PING && opt.op != OP_INCR;
        if (need_tokens) {
            if (!opt.tokens_file) die("--op %s needs --tokens-file", op);
            load_tokens(&tokens, opt.tokens_file, opt.mode == M_REDIS);
        }
        if (opt.mode == M_REDIS && opt.op == OP_CHECK && !opt.sha) die("redis check needs --sha");
        if (opt.op == OP_MIXED) {
            if (!opt.revoke_file) die("--op mixed needs --revoke-file");
            load_tokens(&revoke_tokens, opt.revoke_file, 0);
            revoke_next = opt.revoke_start;
        }
    }
    return run_load();
}
