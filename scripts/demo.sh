#!/usr/bin/env bash
# The main job end to end on a local node under a directory: build silver, pack the sample app,
# start an agent over ./node on loopback, deploy the artifact, redeploy it (nothing to send),
# list the releases, and stop the agent. Needs only Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
silver=target/release/silver
node=${SILVER_DEMO_NODE:-node}
mkdir -p "$node" dist
"$silver" agent --root "$node" --listen 127.0.0.1:0 > "$node/.address" &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$node/.address" ] && break; sleep 0.05; done
export SILVER_NODE=$(head -1 "$node/.address") SILVER_TOKEN=$(cat "$node/token")
"$silver" pack fixtures/hello-wsgi -o dist
"$silver" inspect dist/hello-*.silver | head -8
"$silver" deploy dist/hello-*.silver
"$silver" deploy fixtures/hello-wsgi --json
"$silver" releases hello
echo "The release is at $node/apps/hello/current/ ($(readlink "$node/apps/hello/current"))." >&2
