#!/usr/bin/env python3
"""Load for bench/failsafe.sh: 16 connections send GET /ok for SECONDS, and every 100th request
goes to BAD instead (sent with a short client timeout: the client does not wait for it).
Prints one JSON object: good requests sent, succeeded, their p99, and the app's peak RSS.
Usage: failsafe_load.py HOST:PORT BAD SECONDS PIDS_CMD"""
import http.client, json, subprocess, sys, threading, time

host, port = sys.argv[1].rsplit(":", 1)
bad, seconds, pids_cmd = sys.argv[2], float(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
times, failures, peak = [], [0], [0]
stop = time.monotonic() + seconds

def request(path, timeout):
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "bench.test"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()

def worker():
    n = 0
    while time.monotonic() < stop:
        n += 1
        if bad != "none" and n % 100 == 0:
            try:
                request(bad, 0.5)
            except Exception:
                pass
            continue
        t0 = time.monotonic()
        try:
            ok = request("/ok", 10) == 200
        except Exception:
            ok = False
        with lock:
            times.append(time.monotonic() - t0)
            failures[0] += not ok

def sample_memory():
    while time.monotonic() < stop:
        try:
            pids = subprocess.run(["sh", "-c", pids_cmd], capture_output=True, text=True).stdout.split()
            rss = 0
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/statm") as f:
                        rss += int(f.read().split()[1]) * 4096
                except OSError:
                    pass  # gone, or the pgrep itself
            peak[0] = max(peak[0], rss)
        except Exception:
            pass
        time.sleep(0.5)

threads = [threading.Thread(target=worker) for _ in range(16)]
threads.append(threading.Thread(target=sample_memory))
for t in threads:
    t.start()
for t in threads:
    t.join()
times.sort()
p99 = times[min(len(times) - 1, int(0.99 * len(times)))] if times else 0
print(json.dumps({"sent": len(times), "ok": len(times) - failures[0], "p99_ms": p99 * 1000,
                  "peak_rss_mb": peak[0] / 2**20}))
