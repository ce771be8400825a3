#!/usr/bin/env python3
"""Load for bench/failsafe.sh: 16 connections send GET /ok for SECONDS, and 1% of all requests
go to BAD: one for every 99 good ones, each sent on its own connection beside the 16 (so the
good connections never wait on a bad answer) and given up after WAIT seconds: 0.5 as a user
gives up on a page that hangs, 120 as a browser, curl or a proxy in front waits.
Prints one JSON object: good requests sent, succeeded, their p99, and the app's peak RSS.
Usage: failsafe_load.py HOST:PORT BAD SECONDS PIDS_CMD [WAIT]"""
import collections, http.client, json, os, subprocess, sys, threading, time

host, port = sys.argv[1].rsplit(":", 1)
bad, seconds, pids_cmd = sys.argv[2], float(sys.argv[3]), sys.argv[4]
wait = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
lock = threading.Lock()
times, failures, peak, bad_sent = [], [0], [0], [0]
start = time.monotonic()
stop = start + seconds
done_at = []

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
    while time.monotonic() < stop:
        t0 = time.monotonic()
        try:
            ok = request("/ok", 10) == 200
        except Exception:
            ok = False
        with lock:
            times.append(time.monotonic() - t0)
            done_at.append(time.monotonic())
            failures[0] += not ok


def send_bad():
    try:
        request(bad, wait)
    except Exception:
        pass


def inject():
    """Keeps bad requests at 1% of all requests sent."""
    while bad != "none" and time.monotonic() < stop:
        with lock:
            due = len(times) // 99 - bad_sent[0]
            bad_sent[0] += max(due, 0)
        for _ in range(due):
            threading.Thread(target=send_bad, daemon=True).start()
        time.sleep(0.01)


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
threads.append(threading.Thread(target=inject))
for t in threads:
    t.start()
for t in threads:
    t.join()
if os.environ.get("TIMELINE"):
    # Good answers per second, for a run whose figure needs explaining.
    per = collections.Counter(int(t - start) for t in done_at)
    print(" ".join(str(per[s]) for s in range(int(seconds) + 1)), file=sys.stderr)
times.sort()
p99 = times[min(len(times) - 1, int(0.99 * len(times)))] if times else 0
print(json.dumps({"sent": len(times), "bad_sent": bad_sent[0], "ok": len(times) - failures[0], "p99_ms": p99 * 1000,
                  "peak_rss_mb": peak[0] / 2**20}))
