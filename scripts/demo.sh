#!/usr/bin/env bash
# A scripted tour on a local node under a directory: build silver, pack the sample app, start an
# agent over ./node on loopback (control API and front door), deploy the artifact, fetch a page
# through the front door, redeploy (nothing to send), list the releases, show the logs, run a
# command in the app's environment, and stop the agent. Needs Rust and gunicorn
# (`sudo apt-get install gunicorn`; `silver up` installs it by itself).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
silver=${CARGO_TARGET_DIR:-target}/release/silver
node=${SILVER_DEMO_NODE:-node}
mkdir -p "$node" dist
"$silver" agent --root "$node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$node/.address" &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  [ "$(wc -l < "$node/.address")" -ge 2 ] && break
  kill -0 "$agent" 2>/dev/null || { echo "demo: the agent did not start (its error is above)" >&2; exit 1; }
  sleep 0.05
done
export SILVER_NODE=$(sed -n 1p "$node/.address") SILVER_TOKEN=$(cat "$node/token")
front=$(sed -n 2p "$node/.address")
"$silver" pack fixtures/hello-wsgi -o dist
"$silver" inspect dist/hello-*.silver | head -8
"$silver" deploy dist/hello-*.silver
echo "--- GET $front/ (Host: hello.localhost)" >&2
curl -fsS -H 'Host: hello.localhost' "$front/"; echo
"$silver" deploy fixtures/hello-wsgi --json
"$silver" releases hello
"$silver" logs hello -n 5
"$silver" run hello -- sh -c 'echo "run in $SILVER_APP_NAME, release $SILVER_RELEASE"'
echo "The release is at $node/apps/hello/current/ ($(readlink "$node/apps/hello/current"))." >&2
