#!/usr/bin/env bash
# Registry benchmark, on the pack benchmark's tree (6,551 files), against `rsync -az` of the
# same one-file change in the same run:
#   - bytes a node moves to pull the changed release from a registry, both directions, counted
#     on the wire by a proxy between the node and Debian's docker-registry on loopback;
#   - bytes a fresh CI runner pushes for that change (it has no cache: it asks the registry).
# Usage: bench/registry.sh   (after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(bench/tree.sh)
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cp -a "$tree" "$work/app"
changed=$(find "$work/app/lib/python/django" -name '*.py' -size +25k -size -40k | sort | head -1)
cp -a "$work/app" "$work/app2"
echo "# changed" >> "${changed/$work\/app/$work/app2}"
"$silver" pack "$work/app" -o "$work/v1" > /dev/null 2>&1
"$silver" pack "$work/app2" -o "$work/v2" > /dev/null 2>&1
v1=$(ls "$work"/v1/*.silver) v2=$(ls "$work"/v2/*.silver)

reg_port=$(free_port)
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry" "$reg_port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > /dev/null 2>&1 & pids+=($!)
proxy_port=$(free_port)
python3 bench/count_proxy.py "$proxy_port" "127.0.0.1:$reg_port" "$work/count" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$proxy_port/v2/" > /dev/null && break; sleep 0.1; done
repo="127.0.0.1:$proxy_port/bench"
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

push1=$("$silver" push "$v1" "$repo:v1" --json 2>/dev/null)
ref1=$(echo "$push1" | field '["reference"]')
read -r up0 down0 < "$work/count"
push2=$("$silver" push "$v2" "$repo:v2" --json 2>/dev/null)
ref2=$(echo "$push2" | field '["reference"]')
read -r up1 down1 < "$work/count"
push_up=$((up1 - up0)) push_down=$((down1 - down0))
# The same change pushed to a moving tag (`main`), as CI on a branch does: the last push there
# names the blobs the registry has, so most need no HEAD.
"$silver" push "$v1" "127.0.0.1:$proxy_port/bench-main:main" > /dev/null 2>&1
read -r up4 down4 < "$work/count"
"$silver" push "$v2" "127.0.0.1:$proxy_port/bench-main:main" > /dev/null 2>&1
read -r up5 down5 < "$work/count"
tag_up=$((up5 - up4)) tag_down=$((down5 - down4))

mkdir -p "$work/node"
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$work/addr" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.05; done
export SILVER_NODE=$(head -1 "$work/addr") SILVER_TOKEN=$(cat "$work/node/token")
"$silver" deploy "$ref1" > /dev/null 2>&1
read -r up2 down2 < "$work/count"
deployed=$("$silver" deploy "$ref2" --json 2>/dev/null)
read -r up3 down3 < "$work/count"
pull_up=$((up3 - up2)) pull_down=$((down3 - down2))
packs=$(echo "$deployed" | field '["pulled"]["packs_fetched"]')/$(echo "$deployed" | field '["pulled"]["packs_total"]')

rsync -a "$work/app/" "$work/rsync-dest/"
stats=$(rsync -az --stats "$work/app2/" "$work/rsync-dest/")
rsync_sent=$(echo "$stats" | awk -F': ' '/^Total bytes sent/ {gsub(/,/,"",$2); print $2}')
rsync_recv=$(echo "$stats" | awk -F': ' '/^Total bytes received/ {gsub(/,/,"",$2); print $2}')
rsync_total=$((rsync_sent + rsync_recv))

files=$(find "$tree" -type f | wc -l)
printf '| tree | %s files; one-file change: %s (%s bytes) |\n|---|---|\n' "$files" "${changed#$work/app/}" "$(stat -c %s "${changed/$work\/app/$work/app2}")"
printf '| node pull of the change, both directions (packs fetched %s) | %s (%s up, %s down) |\n' "$packs" "$((pull_up + pull_down))" "$pull_up" "$pull_down"
printf '| `rsync -az` of the change, both directions | %s (%s sent, %s received) |\n' "$rsync_total" "$rsync_sent" "$rsync_recv"
printf '| **pull ratio** (node pull / rsync) | **%.3f** |\n' "$(echo "($pull_up + $pull_down) / $rsync_total" | bc -l)"
printf '| fresh CI runner push of the change, both directions | %s (%s up, %s down; %s blobs sent) |\n' "$((push_up + push_down))" "$push_up" "$push_down" "$(echo "$push2" | field '["blobs_sent"]')"
printf '| fresh CI runner push of the change to a moving tag, both directions | %s (%s up, %s down) |\n' "$((tag_up + tag_down))" "$tag_up" "$tag_down"
printf '| layers | %s parts + %s packs |\n' "$(echo "$push1" | field '["parts"]')" "$(echo "$push1" | field '["packs"]')"
