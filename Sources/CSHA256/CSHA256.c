// SHA-256 through BoringSSL's one-shot entry point, the same code swift-crypto's `SHA256` runs (and so the CPU's SHA
// extensions where it has them), without the two heap-allocated digest contexts `SHA256.hash(data:)` makes, copies
// and frees per call: ~1.1 k of the ~5.9 k instructions a token's hash cost per CHECK (callgrind, issue 19,
// Benchmarks/SCALE.md).
//
// swift-crypto links BoringSSL with its symbols prefixed `CCryptoBoringSSL_` but does not export that module as a
// product, so the one function needed is declared here; the package depends on swift-crypto (Package.swift), which
// links its definition. A swift-crypto that renamed it would fail the link, not the hash; the tests compare this
// function with `SHA256.hash(data:)` over every length up to a few blocks.
#include "CSHA256.h"

extern uint8_t *CCryptoBoringSSL_SHA256(const uint8_t *data, size_t len, uint8_t out[32]);

void tollgate_sha256(const uint8_t *data, size_t length, uint8_t digest[32]) {
    static const uint8_t nothing = 0;
    CCryptoBoringSSL_SHA256(data ? data : &nothing, length, digest);
}
