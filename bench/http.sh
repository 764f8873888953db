#!/usr/bin/env bash
# The HTTP benchmark of the `hello` sample: load from wrk in a second process on
# loopback, per-invocation cost in process, start-up time warm and cold.
# Figures are recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUST_BACKTRACE  # it slows wasmtime by 4-7 %

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release -p host
./target/release/host build --functions functions >/dev/null

project=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$project"' EXIT
mkdir -p "$project/functions/hello"
cp functions/hello/function.toml functions/hello/hello.wasm "$project/functions/hello/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "== wrk -t2 -c16 -d10s (console output to a file, as a service would log)"
./target/release/host start --port "$port" --script-root "$project" >"$project/host.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/api/hello?name=x" >/dev/null; do sleep 0.05; done
wrk -t2 -c16 -d3s "http://127.0.0.1:$port/api/hello?name=bench" >/dev/null  # warm-up
wrk -t2 -c16 -d10s --latency "http://127.0.0.1:$port/api/hello?name=bench"
echo "host resident memory after the run: $(ps -o rss= -p "$pid" | awk '{printf "%.1f MiB", $1/1024}')"
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "== per invocation, in process"
cargo bench -p host --bench invoke 2>/dev/null | grep -v '^$'

echo "== start-up"
python3 bench/startup.py ./target/release/host "$project" 5
