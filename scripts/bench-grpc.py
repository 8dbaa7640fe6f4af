#!/usr/bin/env python3
"""Closed-loop load on Envoy's Authorization/Check over a Unix socket, as Envoy's ext_authz filter sends it.

The client is grpcio's asyncio API with the stub generated from Envoy's own API definitions (PyPI xds-protos), so
the requests are the bytes Envoy would send. `--concurrency C` calls are kept in flight on one HTTP/2 connection
(Envoy multiplexes its checks the same way), each issuing the next as soon as its answer arrives, for `--duration`
seconds after a short warm-up. The token is read from a file (never the command line).

    python3 scripts/bench-grpc.py --socket PATH --token-file FILE --path /api/items/1 --concurrency 16 --duration 5

Prints one JSON object: {"rps":..., "p50_us":..., "p99_us":..., "calls":..., "errors":..., "denied":...}.
"""
import argparse
import asyncio
import json
import time

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--path", default="/api/items/1")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    request = authz.CheckRequest()
    http = request.attributes.request.http
    http.id = "1"
    http.method = "GET"
    http.path = args.path
    http.host = "api.example"
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    http.headers[":authority"] = "api.example"
    http.headers["authorization"] = f"Bearer {token}"
    http.headers["user-agent"] = "bench-grpc"

    async with grpc.aio.insecure_channel(f"unix:{args.socket}") as channel:
        stub = authz_grpc.AuthorizationStub(channel)
        await stub.Check(request, timeout=10)
        latencies: list[int] = []
        counts = {"errors": 0, "denied": 0}
        start = time.perf_counter()
        measure_from = start + args.warmup
        stop_at = measure_from + args.duration

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    response = await stub.Check(request, timeout=10)
                    denied = response.status.code != 0
                except grpc.aio.AioRpcError:
                    denied = None
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies.append(int((t1 - t0) * 1_000_000))
                    if denied is None:
                        counts["errors"] += 1
                    elif denied:
                        counts["denied"] += 1

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = max(time.perf_counter(), stop_at) - measure_from
    latencies.sort()

    def percentile(p: float) -> int:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0

    print(json.dumps({"rps": len(latencies) / elapsed, "p50_us": percentile(0.50), "p99_us": percentile(0.99), "calls": len(latencies), **counts}))


asyncio.run(main())
