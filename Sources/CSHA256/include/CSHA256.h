#ifndef TOLLGATE_CSHA256_H
#define TOLLGATE_CSHA256_H
// SHA-256 of a token's secret in one call, without swift-crypto's per-hash digest objects (see CSHA256.c).
#include <stddef.h>
#include <stdint.h>

// The SHA-256 digest of `length` bytes at `data` (which may be NULL when `length` is 0) into `digest`.
void tollgate_sha256(const uint8_t *data, size_t length, uint8_t digest[32]);

#endif
