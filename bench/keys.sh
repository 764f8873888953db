#!/usr/bin/env bash
# Keys enforced under load: wrk for 30 s against `hello` at authLevel
# function, with a host key in x-functions-key; then 10 s with a wrong key
# (every answer a 401). Prints status counts and the host's resident memory
# sampled every 5 s. Figures are recorded in BENCHMARKS.md.
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
trap 'kill "$pid" "$sampler" 2>/dev/null || true; rm -rf "$project"' EXIT
mkdir -p "$project/functions/hello"
cp functions/hello/hello.wasm "$project/functions/hello/"
cat >"$project/functions/hello/function.toml" <<'TOML'
[[functions]]
name = "hello"
trigger = { type = "httpTrigger", methods = ["get", "post"], authLevel = "function" }
TOML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

./target/release/host start --enableAuth --port "$port" --script-root "$project" >"$project/host.log" 2>&1 &
pid=$!
key=$(until ./target/release/host keys list --script-root "$project" 2>/dev/null | awk '$1=="host"{print $3}' | grep .; do sleep 0.1; done)
url="http://127.0.0.1:$port/api/hello?name=bench"
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "x-functions-key: $key" "$url")" = 200 ]; do sleep 0.05; done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 401 ] || { echo "expected 401 without a key" >&2; exit 1; }
rss() { ps -o rss= -p "$pid" | awk '{printf "%.1f", $1/1024}'; }
echo "host resident memory before: $(rss) MiB"
(while sleep 5; do echo "  rss $(rss) MiB"; done) &
sampler=$!

echo "== wrk -t2 -c16 -d30s, a host key in x-functions-key  (uptime: $(uptime | sed 's/.*load/load/'))"
wrk -t2 -c16 -d30s --latency -H "x-functions-key: $key" "$url"
echo "== wrk -t2 -c16 -d10s, a wrong key (every answer 401)"
wrk -t2 -c16 -d10s -H "x-functions-key: wrong-key-0000000000000000" "$url"
kill "$sampler"; wait "$sampler" 2>/dev/null || true
echo "host resident memory after: $(rss) MiB"
echo "5xx answers logged by the host: $(grep -c 'Executed .*Failed' "$project/host.log" || true)"
echo "invocations executed: $(grep -c "Executed 'Functions.hello' (Succeeded" "$project/host.log" || true)"
kill "$pid"; wait "$pid" 2>/dev/null || true
