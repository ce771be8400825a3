#!/usr/bin/env bash
# Deploy benchmark, on the pack benchmark's tree, with a real agent on loopback, against rsync in
# the same run:
#   - bytes on the wire for a one-file change: `silver deploy` against `rsync -az` of the same change;
#   - the time of a no-op redeploy;
#   - a full first deploy against `rsync -a` into a local directory.
# Usage: bench/deploy.sh [RUNS]   (after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
tree=$(bench/tree.sh)
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"  # apps run as an unprivileged user when this runs as root
trap 'kill $agent_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cp -a "$tree" "$work/app"
"$silver" pack "$work/app" -o "$work/v1" > /dev/null 2>&1
v1=$(ls "$work"/v1/*.silver)
# The one-file change: a line appended to one module of about 30 KB.
changed=$(find "$work/app/lib/python/django" -name '*.py' -size +25k -size -40k | sort | head -1)
cp -a "$work/app" "$work/app2"
echo "# changed" >> "${changed/$work\/app/$work/app2}"
"$silver" pack "$work/app2" -o "$work/v2" > /dev/null 2>&1
v2=$(ls "$work"/v2/*.silver)

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
start_agent() {
  rm -rf "$work/node" && mkdir -p "$work/node"
  "$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$work/addr" 2>/dev/null &
  agent_pid=$!
  for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.05; done
  export SILVER_NODE=$(head -1 "$work/addr") SILVER_TOKEN=$(cat "$work/node/token")
}

first=() rsync_first=() noop=()
for _ in $(seq "$runs"); do
  start_agent
  t0=$(now); "$silver" deploy "$v1" > /dev/null 2>&1; t1=$(now)
  first+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); "$silver" deploy "$v1" > /dev/null 2>&1; t1=$(now)
  noop+=("$(echo "$t1 - $t0" | bc -l)")
  kill $agent_pid; wait $agent_pid 2>/dev/null || true
  rm -rf "$work/rsync-dest"
  t0=$(now); rsync -a "$work/app/" "$work/rsync-dest/"; sync -f "$work/rsync-dest"; t1=$(now)
  rsync_first+=("$(echo "$t1 - $t0" | bc -l)")
done
first_t=$(printf '%s\n' "${first[@]}" | median)
rsync_t=$(printf '%s\n' "${rsync_first[@]}" | median)
noop_t=$(printf '%s\n' "${noop[@]}" | median)

# One-file change: bytes on the wire, with the previous manifest cached on this machine (the
# manifest goes as a delta) and without (a fresh CI runner: the whole manifest, compressed).
export SILVER_CACHE_DIR="$work/cache"
bytes_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_sent"])'; }
start_agent
"$silver" deploy "$v1" > /dev/null 2>&1
silver_bytes=$("$silver" deploy "$v2" --json 2>/dev/null | bytes_of)
kill $agent_pid; wait $agent_pid 2>/dev/null || true
start_agent
"$silver" deploy "$v1" > /dev/null 2>&1
rm -rf "$SILVER_CACHE_DIR"
silver_cold=$("$silver" deploy "$v2" --json 2>/dev/null | bytes_of)
rsync_bytes=$(rsync -az --stats "$work/app2/" "$work/rsync-dest/" | awk -F': ' '/^Total bytes sent/ {gsub(/,/,"",$2); print $2}')
rsync_recv=$(rsync -az --stats "$work/app2/" "$work/rsync-dest/" | awk -F': ' '/^Total bytes received/ {gsub(/,/,"",$2); print $2}')

files=$(find "$tree" -type f | wc -l)
printf '| tree | %s files, %s bytes; one-file change: %s (%s bytes) |\n|---|---|\n' "$files" "$(du -sb --apparent-size "$tree" | cut -f1)" "${changed#$work/app/}" "$(stat -c %s "${changed/$work\/app/$work/app2}")"
printf '| one-file change, bytes sent: silver (manifest as a delta) | %s |\n' "$silver_bytes"
printf '| one-file change, bytes sent: silver (no cached manifest) | %s |\n' "$silver_cold"
printf '| one-file change, bytes sent: `rsync -az` | %s (and %s received) |\n' "$rsync_bytes" "$rsync_recv"
printf '| **wire ratio** (silver / rsync sent) | **%.3f** delta, **%.2f** no cache |\n' "$(echo "$silver_bytes / $rsync_bytes" | bc -l)" "$(echo "$silver_cold / $rsync_bytes" | bc -l)"
printf '| no-op redeploy | %.3f s |\n' "$noop_t"
printf '| full first deploy: silver (upload, stage, sync, flip) | %.3f s |\n' "$first_t"
printf '| full first copy: `rsync -a` + sync | %.3f s |\n' "$rsync_t"
printf '| **first-deploy ratio** (silver / rsync) | **%.2f** |\n' "$(echo "$first_t / $rsync_t" | bc -l)"
printf '| runs | %s (median), %s cores |\n' "$runs" "$(nproc)"
