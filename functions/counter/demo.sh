#!/usr/bin/env bash
# Seed 003's client: signal a counter entity directly, then run 5 orchestrations
# that signal and call their own counters. Needs a running host with this folder
# (`./dev start`); FNHOST_URL points elsewhere than http://localhost:7071.
#
#   ./functions/counter/demo.sh [entity-key]
set -euo pipefail
base="${FNHOST_URL:-http://localhost:7071}"
key="${1:-my-counter}"
count=5

echo "Starting entity operations demo - $count orchestrations"
echo "=== Direct Entity Operations ==="
echo "Signaling entity '$key' to add 100"
echo "Signaling entity '$key' to subtract 25"
curl -fsS -X POST "$base/api/counter/$key" >/dev/null
echo "Entity '$key' state: $(curl -fsS "$base/runtime/webhooks/durabletask/entities/counter/$key")"
echo "=== Orchestration-based Entity Operations ==="
for i in $(seq 1 "$count"); do
  echo "Scheduling orchestration #$i for entity '$key-orch-$i'"
  result=$(curl -fsS -X POST "$base/api/counter_orchestrator/$key-orch-$i")
  echo "Orchestration completed successfully with result: $result"
done
