"""The task-queue benchmark's client (bench/tasks.sh): queues tasks through the app (which calls
silversupport.tasks.add), times direct requests beside them, and reads what the app ran.

  tasks_load.py latency FRONT ROUNDS LOG      direct request vs queued task, one at a time
  tasks_load.py enqueue FRONT TOTAL IDS       TOTAL tasks queued by 4 clients; ids to IDS
  tasks_load.py wait LOG COUNT                until the app has run COUNT tasks
  tasks_load.py check LOG IDS                 lost and duplicated tasks
"""
import http.client, json, os, statistics, sys, threading, time


def get(front, path):
    host, port = front.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("GET", path, headers={"Host": "bench.test"})
    answer = conn.getresponse()
    body = answer.read().decode()
    conn.close()
    if answer.status != 200:
        raise SystemExit(f"GET {path}: {answer.status} {body}")
    return body


def ran(log):
    try:
        with open(log) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def latency(front, rounds, log):
    direct, delays, adds = [], [], []
    for _ in range(rounds):
        start = time.monotonic()
        get(front, "/direct")
        direct.append((time.monotonic() - start) * 1000)
    for _ in range(rounds):
        before = len(ran(log))
        start = time.monotonic()
        get(front, "/enqueue?n=1")
        adds.append((time.monotonic() - start) * 1000)
        while len(ran(log)) == before:
            time.sleep(0.0005)
        delays.append((time.monotonic() - start) * 1000)
    out = {
        "direct_p50_ms": statistics.median(direct), "direct_p99_ms": pct(direct, 0.99),
        "enqueue_p50_ms": statistics.median(adds),
        "task_p50_ms": statistics.median(delays), "task_p99_ms": pct(delays, 0.99),
    }
    print(json.dumps(out))


def enqueue(front, total, ids_path, delay=0):
    ids, lock, batch = [], threading.Lock(), 250

    def client(n):
        while n > 0:
            got = get(front, f"/enqueue?n={min(batch, n)}&delay={delay}").split()
            with lock:
                ids.extend(got)
            n -= batch

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(total // 4,)) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with open(ids_path, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(json.dumps({"queued": len(ids), "enqueue_s": time.monotonic() - start}))


def wait(log, count, within=600):
    deadline = time.monotonic() + within
    while len(ran(log)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def check(log, ids_path):
    with open(ids_path) as f:
        ids = [line.strip() for line in f if line.strip()]
    runs = [r[0] for r in ran(log)]
    seen, queued = set(runs), set(ids)
    print(json.dumps({
        "queued": len(ids), "lost": sum(1 for i in ids if i not in seen),
        "ran": len(runs), "duplicates": len(runs) - len(seen),
        "unexpected": sorted(seen - queued)[:5],
    }))


mode = sys.argv[1]
if mode == "latency":
    latency(sys.argv[2], int(sys.argv[3]), sys.argv[4])
elif mode == "enqueue":
    enqueue(sys.argv[2], int(sys.argv[3]), sys.argv[4], *sys.argv[5:])
elif mode == "wait":
    wait(sys.argv[2], int(sys.argv[3]))
elif mode == "check":
    check(sys.argv[2], sys.argv[3])
