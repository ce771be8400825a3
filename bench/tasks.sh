#!/usr/bin/env bash
# Task-queue benchmark (issue 25): a WSGI app on a release agent queues tasks with
# silversupport.tasks.add; each task appends its id to a file. Measures, in one run:
#  - a direct request through the front door against a queued task (the app's add, then the
#    node's request to the app), one at a time: the latency a queue adds;
#  - TOTAL tasks (default 10000) queued by 4 clients, and the rate they run at
#    (task_concurrency = 2, the default);
#  - the same TOTAL again, all due at once, with `kill -9` of the agent once half of them ran,
#    and a restart:
#    none may be lost; duplicates are what at-least-once allows (a run under way at the kill).
# Usage: bench/tasks.sh [TOTAL]   (needs python3 and gunicorn)
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-10000}
source bench/agent.sh
printf '[production]\napp_name = queue\nrunner = app.py\ndefault_location = bench.test\ntask_queue_size = 1000000\n' > "$work/app/app.ini"
cat > "$work/app/app.py" <<'PY'
import os, time, urllib.parse
import silversupport.tasks as tasks

LOG = os.path.join(os.environ["HOME"], "ran")

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/enqueue":
        q = urllib.parse.parse_qs(environ["QUERY_STRING"])
        n, delay = int(q["n"][0]), float(q.get("delay", ["0"])[0])
        body = "\n".join(tasks.add("/work", body="x", delay=delay) for _ in range(n))
    elif path in ("/work", "/direct"):
        # A task and a direct request do the same work: one line appended.
        with open(LOG, "a") as f:
            f.write("%s\n" % environ.get("silver.task", "direct"))
        body = "ok"
    else:
        body = "ok"  # the health check
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
PY
"$silver" deploy "$work/app" > /dev/null 2>&1
log=$work/node/apps/queue/data/ran
load() { python3 bench/tasks_load.py "$@"; }
echo "latency (200 of each, one at a time):"
load latency "${front#http://}" 200 "$log"
grep -v direct "$log" > "$log.tasks" || true; : > "$log"

echo "throughput ($total tasks):"
start=$(date +%s.%N)
load enqueue "${front#http://}" "$total" "$work/ids1"
load wait "$log" "$total"
end=$(date +%s.%N)
python3 -c "import sys; print(f'{{\"tasks_per_s\": {int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}}}')" "$total" "$start" "$end"
load check "$log" "$work/ids1"
: > "$log"

echo "kill -9 halfway ($total tasks, all queued before the first is due):"
# Due 20 s after they are queued, so the queue is full when they start running.
load enqueue "${front#http://}" "$total" "$work/ids2" 20
load wait "$log" $((total / 2))
kill -9 "$agent"; wait "$agent" 2>/dev/null || true
echo "killed the agent after $(wc -l < "$log") runs; restarting"
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$work/urls2" 2>> "$work/agent.log" &
agent=$!
load wait "$log" "$total"
# Runs under way at the kill may land twice; give the last of them a moment to finish.
sleep 2
load check "$log" "$work/ids2"
