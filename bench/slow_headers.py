#!/usr/bin/env python3
"""Times ordinary requests to the front door, first alone, then while N connections from another
loopback address sit on unfinished headers. Usage: slow_headers.py HOST:PORT [N] [SECONDS]"""
import socket, sys, time

def timed_get(addr):
    t0 = time.monotonic()
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    ok = data.startswith(b"HTTP/1.1 200")
    return time.monotonic() - t0, ok

def run(addr, seconds, rate=20):
    times, failures = [], 0
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        t, ok = timed_get(addr)
        times.append(t)
        failures += not ok
        n += 1
        # Paced at `rate` per second.
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    return {"requests": len(times), "failed": failures, "p50_ms": pick(0.5),
            "p99_ms": pick(0.99), "max_ms": times[-1] * 1000}

def flood(addr, n):
    held = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(addr)
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\nX-Slow: ")
        held.append(s)
    return held

def main():
    host, port = sys.argv[1].rsplit(":", 1)
    addr = (host, int(port))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
    clean = run(addr, seconds)
    held = flood(addr, n)
    loaded = run(addr, seconds)
    still_open = 0
    for s in held:
        s.setblocking(False)
        try:
            s.recv(1)  # b"" or a 408: the server closed it
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    print("| | requests | failed | p50 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for name, r in (("clean", clean), (f"{n} slow-header connections open", loaded)):
        print(f"| {name} | {r['requests']} | {r['failed']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms |")
    print(f"| slow connections still open at the end | {still_open} of {n} | | | | |")
    print(f"| p99 ratio (flood / clean) | {loaded['p99_ms'] / clean['p99_ms']:.2f} | | | | |")

main()
