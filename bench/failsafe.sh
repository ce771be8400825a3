#!/usr/bin/env bash
# Fail-safe benchmark (issues 13 and 24): a WSGI app under a release agent's front door, 16
# connections sending GET /ok for SECONDS, 1% of requests sent to a bad path on connections of
# their own, whose clients hang up after 0.5 s or wait up to 120 s (WAITS). For each kind of
# bad request and each client behaviour, beside a clean run just before it: good-request
# success, throughput and p99 as ratios to the clean run, and the app's peak memory.
# Targets: >= 99% success, >= 0.80 throughput, p99 <= 3x.
# Usage: bench/failsafe.sh [SECONDS [KIND...]]   (needs python3 and gunicorn; KINDs like /busy)
#   WAITS="0.5 120" (default) the bad requests' clients' patience, in seconds
#   PLATFORM=php    the same app in PHP under php-fpm (needs php-fpm)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
shift || true
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(/busy /lock /sleep /segv /leak /big)
source bench/agent.sh
if [ "${PLATFORM:-python}" = php ]; then
  printf '[production]\napp_name = failsafe\nplatform = php\nphp_root = site/\nrunner = site/app.php\ndefault_location = bench.test\n' > "$work/app/app.ini"
  mkdir -p "$work/app/site"
  cat > "$work/app/site/app.php" <<'PHP'
<?php
$path = $_SERVER['SCRIPT_NAME'];
if ($path === '/busy') { while (true) {} }
if ($path === '/lock') {
  // Taken twice: flock locks belong to an open file, so the second open waits on the first.
  $a = fopen(sys_get_temp_dir() . '/failsafe.lock', 'c'); flock($a, LOCK_EX);
  $b = fopen(sys_get_temp_dir() . '/failsafe.lock', 'c'); flock($b, LOCK_EX);
}
if ($path === '/sleep') { sleep(1); }
if ($path === '/segv') { posix_kill(getmypid(), SIGSEGV); }
if ($path === '/leak') { $GLOBALS['leak'] = str_repeat('x', 1 << 20); }
$body = $path === '/big' ? str_repeat('x', 100000) : "ok\n";
header('Content-Type: text/plain');
echo $body;
PHP
  pids="pgrep -f php-fpm:.pool"
else
printf '[production]\napp_name = failsafe\nrunner = app.py\ndefault_location = bench.test\n' > "$work/app/app.ini"
cat > "$work/app/app.py" <<'PY'
import ctypes, threading, time
_lock = threading.Lock()
_leak = []

def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/busy":
        while 1:
            pass
    if path == "/lock":
        _lock.acquire()
        _lock.acquire()
    if path == "/sleep":
        time.sleep(1)
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/leak":
        _leak.append(b"x" * (1 << 20))
    body = b"x" * 100000 if path == "/big" else b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY
"$silver" deploy "$work/app" > /dev/null 2>&1
pids="pgrep -f silver_wsgi:application"
fi
waits=${WAITS:-0.5 120}
printf '| bad clients wait | 1%% of requests | good-request success | throughput ratio | p99 | p99 ratio | app peak RSS |\n|---|---|---|---|---|---|---|\n'
row() {
  python3 - "$@" <<'PY'
import json, sys
wait, name, r, c = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
ok = r["ok"] / r["sent"] if r["sent"] else 0
print(f"| {wait} s | {name} | {ok:.1%} ({r['ok']}/{r['sent']}) | {r['ok'] / max(c['ok'], 1):.2f} | {r['p99_ms']:.0f} ms | {r['p99_ms'] / max(c['p99_ms'], 1e-9):.2f} | {r['peak_rss_mb']:.0f} MiB |")
PY
}
load() { python3 bench/failsafe_load.py "${front#http://}" "$1" "$secs" "$pids" "$2"; }
# Each kind runs on a fresh release (so one kind's wedged workers do not count against the
# next), right after a clean run on that release: the ratios compare neighbours, not the
# first minute of the run with the last.
for wait in $waits; do
  for bad in "${kinds[@]}"; do
    "$silver" deploy "$work/app" --restart > /dev/null 2>&1 || { echo "| $wait s | $bad | the app did not come back |"; continue; }
    clean=$(load none "$wait")
    row "$wait" "none (clean run before $bad)" "$clean" "$clean"
    r=$(load "$bad" "$wait")
    row "$wait" "$bad" "$r" "$clean"
  done
done
