#!/usr/bin/env bash
# The main job, end to end on one machine: start the stub model server, run the
# example suite through an embedded nats-server and an in-process worker,
# print the summary table and write it to .vigil/example-summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export VIGIL_HOME="${VIGIL_HOME:-$HOME/.vigil}"
vigil=target/release/vigil
[ -x "$vigil" ] || cargo build --release --locked --bin vigil
"$vigil" stub --listen 127.0.0.1:8089 >/dev/null 2>&1 &
stub=$!
trap 'kill "$stub" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8089) 2>/dev/null && break
  sleep 0.1
done
mkdir -p .vigil
"$vigil" run examples/arithmetic.yaml --workers 2 --out .vigil/example-summary.json "$@"
