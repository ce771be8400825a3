# Sourced by the benchmarks that need a node: builds silver (release), makes a work directory
# that app users can enter, and starts a release agent on it. Sets silver, work, agent, front,
# SILVER_NODE and SILVER_TOKEN; stops the agent and removes the work directory on exit.
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
trap 'kill "$agent" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP_WORK:-}" ] && echo "work: $work" >&2 || rm -rf "$work"' EXIT
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$work/urls" 2> "$work/agent.log" &
agent=$!
# The agent prints its control and front-door URLs once it listens.
until [ "$(wc -l < "$work/urls")" -ge 2 ]; do
  kill -0 "$agent" || { cat "$work/agent.log"; exit 1; }
  sleep 0.1
done
front=$(sed -n 2p "$work/urls")
SILVER_NODE=$(sed -n 1p "$work/urls")
SILVER_TOKEN=$(cat "$work/node/token")
export SILVER_NODE SILVER_TOKEN
mkdir -p "$work/app/static"
