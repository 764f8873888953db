#!/usr/bin/env python3
"""Time from `host start` to the first 200 of api/hello, with a warm and a cold compile cache.

Usage: bench/startup.py HOST_BINARY PROJECT_DIR [RUNS]
"""
import http.client, os, shutil, socket, statistics, subprocess, sys, tempfile, time

host, project = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def first_200(cache):
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([host, "start", "--port", str(port), "--script-root", project,
                             "--cache-dir", cache], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = t0 + 60
        while time.perf_counter() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/api/hello?name=bench")
                if c.getresponse().status == 200:
                    return (time.perf_counter() - t0) * 1000
            except OSError:
                time.sleep(0.0005)
        raise SystemExit("no 200 within 60 s")
    finally:
        proc.terminate(); proc.wait()

cache = tempfile.mkdtemp()
try:
    cold = []
    for _ in range(runs):
        shutil.rmtree(cache); os.mkdir(cache)
        cold.append(first_200(cache))
    warm = [first_200(cache) for _ in range(runs)]
finally:
    shutil.rmtree(cache, ignore_errors=True)
print(f"start to first 200, warm cache: median {statistics.median(warm):.1f} ms (runs: {', '.join(f'{x:.1f}' for x in warm)})")
print(f"start to first 200, cold cache: median {statistics.median(cold):.1f} ms (runs: {', '.join(f'{x:.1f}' for x in cold)})")
