#!/usr/bin/env bash
# Regenerates the Swift code of Envoy's ext_authz messages and service (Sources/TollgateGRPC/Generated) from our own
# minimal .proto files (Protocol/grpc). The generated files are committed, so that no build runs protoc or a protobuf
# plugin (a first build of swift-protobuf's plugin takes many minutes); run this only after changing a .proto.
#
#   bash scripts/generate-grpc.sh
#
# Needs protoc (Debian: apt-get install protobuf-compiler). The two plugins are built from the package's own
# dependencies (swift-protobuf's protoc-gen-swift, grpc-swift-protobuf's protoc-gen-grpc-swift-2), in release mode,
# in a scratch folder of their own (.build-protoc), so the versions match the runtime libraries the code links.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "generate-grpc: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
# PROTOC_PLUGIN_DIR: a folder already holding both plugins (built from the same versions), to skip building them.
if [ -n "${PROTOC_PLUGIN_DIR:-}" ]; then
    bin=$PROTOC_PLUGIN_DIR
else
    scratch=${PROTOC_PLUGIN_SCRATCH:-.build-protoc}
    swift build -c release --scratch-path "$scratch" --product protoc-gen-swift
    swift build -c release --scratch-path "$scratch" --product protoc-gen-grpc-swift-2
    bin=$(swift build -c release --scratch-path "$scratch" --show-bin-path)
fi
out=Sources/TollgateGRPC/Generated
find "$out" -name '*.swift' -delete
protos=(
    envoy/service/auth/v3/tollgate_ext_authz.proto
    envoy/config/core/v3/tollgate_base.proto
    envoy/type/v3/tollgate_http_status.proto
    google/rpc/tollgate_status.proto
)
# The messages of every file; the service (server and client stubs) of the one file that declares it.
protoc -I Protocol/grpc \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --swift_out="$out" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
    "${protos[@]}"
protoc -I Protocol/grpc \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
    --grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
    "${protos[0]}"
echo "generate-grpc: $(protoc --version); wrote:"
ls "$out"/*.swift
