#!/usr/bin/env bash
# The main job, end to end on one machine:
#
#   bash scripts/run-example.sh             # a real model: SmolLM2-135M-Instruct on examples/quickstart.yaml
#   bash scripts/run-example.sh arithmetic  # examples/arithmetic.yaml against the stub model server
#   bash scripts/run-example.sh support     # also: summarise, codegen (use-case scorers, on the stub)
#
# The quickstart runs the model inside vigil's worker on the CPU (no model
# server, no GPU), through an embedded nats-server; the arithmetic example
# starts `vigil stub` first. Either way the summary table is printed and
# written to .vigil/<example>-summary.json. Further arguments go to `vigil run`.
set -euo pipefail
cd "$(dirname "$0")/.."
export VIGIL_HOME="${VIGIL_HOME:-$HOME/.vigil}"
example=quickstart
if [[ $# -gt 0 && $1 != -* ]]; then
    example=$1
    shift
fi
vigil=target/release/vigil
mkdir -p .vigil
case "$example" in
quickstart)
    model="$VIGIL_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [[ ! -f "$model" ]]; then
        echo "run-example: the quickstart's model is missing: $model" >&2
        echo "run-example: get it with 'bash scripts/setup.sh' (or only the model: 'bash scripts/setup-extra.d/model.sh')" >&2
        exit 2
    fi
    [ -x "$vigil" ] || cargo build --release --locked --bin vigil
    exec "$vigil" run examples/quickstart.yaml --out .vigil/quickstart-summary.json "$@"
    ;;
arithmetic | support | summarise | codegen)
    [ -x "$vigil" ] || cargo build --release --locked --bin vigil
    "$vigil" stub --listen 127.0.0.1:8089 >/dev/null 2>&1 &
    stub=$!
    trap 'kill "$stub" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/8089) 2>/dev/null && break
        sleep 0.1
    done
    "$vigil" run "examples/$example.yaml" --workers 2 --out ".vigil/$example-summary.json" "$@"
    ;;
*)
    echo "run-example: unknown example '$example' (quickstart, arithmetic, support, summarise, codegen)" >&2
    exit 2
    ;;
esac
