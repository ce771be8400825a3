#!/usr/bin/env bash
# Bake benchmark, in one run (as root, after scripts/install-deps.sh):
#   1. a cold `silver bake` of the Debian recipe (empty step cache) against a bare `mmdebstrap`
#      of the same package set: the ratio;
#   2. a warm re-bake after a files-only change (the bootstrap is reused);
#   3. the time from `silver node boot` to the agent answering (KVM where it works, else TCG).
# Usage: bench/bake.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin silver
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
trap '"$silver" node stop bench --nodes-dir "$work/nodes" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
recipe=image-recipes/debian-bookworm.toml
now() { date +%s.%N; }
packages=$(python3 -c "import tomllib; print(','.join(tomllib.load(open('$recipe','rb'))['packages']['include']))")

t0=$(now)
mmdebstrap --quiet --mode=root --variant=apt --include="$packages" bookworm "$work/bare.tar" http://deb.debian.org/debian
t1=$(now)
"$silver" bake "$recipe" -o "$work/image" --cache "$work/cache" >/dev/null 2> "$work/cold.log" || { cat "$work/cold.log" >&2; exit 1; }
t2=$(now)
# A files-only change: the same recipe with one more file.
cp -r image-recipes "$work/recipes"
printf '\n[[files]]\npath = "/etc/motd"\ncontent = "a silver node\\n"\n' >> "$work/recipes/debian-bookworm.toml"
"$silver" bake "$work/recipes/debian-bookworm.toml" -o "$work/image2" --cache "$work/cache" --explain 2> "$work/warm.log" >/dev/null
t3=$(now)
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
t4=$(now)
"$silver" node boot "$work/image" --name bench --ssh-key "$work/key.pub" --port-base 47022 --nodes-dir "$work/nodes" >/dev/null 2> "$work/boot.log"
t5=$(now)
accel=$(grep -o '(Kvm)\|(Tcg)' "$work/boot.log" | head -1)

bare=$(echo "$t1 - $t0" | bc -l); cold=$(echo "$t2 - $t1" | bc -l)
warm=$(echo "$t3 - $t2" | bc -l); boot=$(echo "$t5 - $t4" | bc -l)
printf '| cold bake: `silver bake` | %.1f s |\n' "$cold"
printf '| bare `mmdebstrap` of the same packages | %.1f s |\n' "$bare"
printf '| **cold-bake ratio** (silver / mmdebstrap) | **%.2f** |\n' "$(echo "$cold / $bare" | bc -l)"
printf '| warm re-bake after a files-only change | %.1f s (%s) |\n' "$warm" "$(grep -c Reused "$work/warm.log") step reused"
printf '| boot to agent answering %s | %.1f s |\n' "$accel" "$boot"
