#!/usr/bin/env bash
# Pack benchmark: `silver pack` against `tar --sort=name ... | zstd -T0 -3` on the same tree, in the
# same run. The tree is a realistic app: about a dozen pure-Python packages installed with
# `pip install --target` (~100 MB, ~6,000 files). Prints a Markdown table for BENCHMARKS.md.
# Usage: bench/pack.sh [RUNS]   (needs python3 -m pip, zstd, GNU tar, and PyPI for the first run)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=bench/work
tree=$(bench/tree.sh)
cargo build --release --quiet
silver=$PWD/target/release/silver
files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
out=$work/out && rm -rf "$out" && mkdir -p "$out"
# Warm the page cache so both sides read from memory.
tar -cf - -C "$tree" . > /dev/null

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

base_times=() silver_times=()
for _ in $(seq "$runs"); do
  t0=$(now)
  (cd "$tree" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | zstd -q -T0 -3 > "../baseline.tar.zst")
  t1=$(now)
  "$silver" pack "$tree" -o "$out" > /dev/null 2>&1
  t2=$(now)
  base_times+=("$(echo "$t1 - $t0" | bc -l)")
  silver_times+=("$(echo "$t2 - $t1" | bc -l)")
done
base_t=$(printf '%s\n' "${base_times[@]}" | median)
silver_t=$(printf '%s\n' "${silver_times[@]}" | median)
base_size=$(stat -c %s "$work/baseline.tar.zst")
silver_size=$(stat -c %s "$out"/*.silver)
# Peak memory of one pack (maximum resident set size, KiB).
/usr/bin/time -o "$work/rss" -f '%M' "$silver" pack "$tree" -o "$out" > /dev/null 2>&1
rss=$(tail -1 "$work/rss")

printf '| tree | %s files, %s bytes |\n|---|---|\n' "$files" "$bytes"
printf '| baseline `tar | zstd -T0 -3` | %.3f s, %s bytes |\n' "$base_t" "$base_size"
printf '| `silver pack` | %.3f s, %s bytes, peak RSS %s KiB |\n' "$silver_t" "$silver_size" "$rss"
printf '| time ratio (silver / baseline) | %.3f |\n' "$(echo "$silver_t / $base_t" | bc -l)"
printf '| size ratio (silver / baseline) | %.4f |\n' "$(echo "$silver_size / $base_size" | bc -l)"
printf '| runs | %s (median), %s cores |\n' "$runs" "$(nproc)"
