#!/usr/bin/env bash
# Backup and restore benchmark, against the tools an operator would use by hand, in the same
# run: an app with `service.postgresql` (ROWS rows) and `service.files` (50 MiB in 200 files) on
# a real agent and a private PostgreSQL cluster on loopback.
#   - `silver backup APP B.tar.zst` against `pg_dump | zstd` plus `tar -c files | zstd`;
#   - `silver restore` of it (which first drops what the app made) against `psql < dump` into
#     a new database plus `tar -x`;
#   - whether two backups of the same data are the same bytes.
# Usage: bench/backup.sh [ROWS] [RUNS]   (as root, after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-200000}
runs=${2:-3}
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"  # apps run as an unprivileged user
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  kill "${agent_pid:-0}" 2>/dev/null || true
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  for u in $(grep "silver app" /etc/passwd | cut -d: -f1); do userdel -f "$u" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pg" && chown postgres "$work/pg" && chmod 700 "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
printf 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n' > "$work/pg/pg_hba.conf"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -w -l "$work/pg/log" \
  -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null

mkdir -p "$work/node"
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --postgres-url "postgresql://postgres@127.0.0.1:$port/postgres" > "$work/addr" 2>/dev/null &
agent_pid=$!
for _ in $(seq 200); do [ -s "$work/addr" ] && break; sleep 0.05; done
export SILVER_NODE=$(head -1 "$work/addr") SILVER_TOKEN=$(cat "$work/node/token")

mkdir -p "$work/app"
printf '[production]\napp_name = bk\nrunner = app.py\nservice.postgresql =\nservice.files =\n' > "$work/app/app.ini"
printf 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n' > "$work/app/app.py"
"$silver" deploy "$work/app" > /dev/null 2>&1
"$silver" run bk -- sh -c "psql -X -q \"\$DATABASE_URL\" -c \"CREATE TABLE t (id int PRIMARY KEY, v text, n numeric); INSERT INTO t SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, $rows) g\" && for i in \$(seq 200); do head -c 262144 /dev/urandom > \"\$CONFIG_FILES/f\$i\"; done" > /dev/null
db=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["CONFIG_PG_DBNAME"])' "$work/node/apps/bk/run/environment.json")
files_dir="$work/node/apps/bk/files"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pg() { PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres "$@"; }

backup=() base_backup=() restore=() base_restore=()
for i in $(seq "$runs"); do
  t0=$(now); "$silver" backup bk "$work/b$i.tar.zst" > /dev/null 2>&1; t1=$(now)
  backup+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now)
  pg pg_dump --no-owner --no-privileges "$db" | zstd -q -9 > "$work/dump$i.sql.zst"
  tar -C "$files_dir" -cf - . | zstd -q -9 > "$work/files$i.tar.zst"
  t1=$(now)
  base_backup+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); "$silver" restore "$work/b$i.tar.zst" bk > /dev/null 2>&1; t1=$(now)
  restore+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now)
  pg createdb "scratch$i"
  zstd -dc "$work/dump$i.sql.zst" | pg psql -X -q -v ON_ERROR_STOP=1 -1 -d "scratch$i" > /dev/null
  rm -rf "$work/files-restored" && mkdir "$work/files-restored"
  zstd -dc "$work/files$i.tar.zst" | tar -C "$work/files-restored" -xf -
  t1=$(now)
  base_restore+=("$(echo "$t1 - $t0" | bc -l)")
done
mkdir "$work/x1" "$work/x2"
zstd -dc "$work/b1.tar.zst" | tar -C "$work/x1" -xf -
zstd -dc "$work/b$runs.tar.zst" | tar -C "$work/x2" -xf -
same=no
cmp -s "$work/x1/postgresql.sql" "$work/x2/postgresql.sql" && cmp -s "$work/x1/files.tar" "$work/x2/files.tar" && same=yes

b=$(printf '%s\n' "${backup[@]}" | median)
bb=$(printf '%s\n' "${base_backup[@]}" | median)
r=$(printf '%s\n' "${restore[@]}" | median)
rb=$(printf '%s\n' "${base_restore[@]}" | median)
printf '| data | %s rows (%s of SQL), 200 files of 256 KiB |\n|---|---|\n' "$rows" "$(du -h "$work/x1/postgresql.sql" | cut -f1)"
printf '| `silver backup bk B.tar.zst` | %.2f s (%s) |\n' "$b" "$(du -h "$work/b1.tar.zst" | cut -f1)"
printf '| `pg_dump | zstd` + `tar | zstd` | %.2f s |\n' "$bb"
printf '| **backup ratio** (silver / by hand) | **%.2f** |\n' "$(echo "$b / $bb" | bc -l)"
printf '| `silver restore B.tar.zst bk` | %.2f s |\n' "$r"
printf '| `psql < dump` into a new database + `tar -x` | %.2f s |\n' "$rb"
printf '| **restore ratio** (silver / by hand) | **%.2f** |\n' "$(echo "$r / $rb" | bc -l)"
printf '| two backups of the same data are the same bytes | %s |\n' "$same"
printf '| runs | %s (median), %s cores |\n' "$runs" "$(nproc)"
