#!/usr/bin/env bash
# The production loop on one machine, end to end (docs/production.md):
# a client -> vigil proxy -> a model server (here the stub), captures on
# VIGIL_CAPTURE -> vigil monitor -> jobs -> vigil worker -> windows
# summarised on vigil.runs.support-json.support -> a drift alarm on
# vigil.alerts.support when the answers stop being JSON.
#
#   examples/production_loop.sh            # GOOD=1000 BAD=500 by default
#
# Needs `vigil`, `nats-server` (>= 2.10) and `curl` on PATH.
set -euo pipefail
VIGIL=${VIGIL:-vigil}
NATS_PORT=${NATS_PORT:-4222}
STUB=${STUB:-127.0.0.1:8089}
PROXY=${PROXY:-127.0.0.1:8090}
GOOD=${GOOD:-1000}
BAD=${BAD:-500}
NATS=nats://127.0.0.1:$NATS_PORT
DIR=$(mktemp -d)
MONITOR=
# The monitor stops first, while NATS is up to record its state (stopped
# together with nats-server, it would retry that write for minutes).
trap '[ -n "$MONITOR" ] && kill "$MONITOR" 2>/dev/null && wait "$MONITOR" 2>/dev/null
      kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
now() { date +%s.%N; }
wait_for() { # wait_for WHAT COMMAND...: polls until COMMAND succeeds (2 min at most)
  local what=$1; shift
  for _ in $(seq 1 1200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; exit 1
}

# 1. NATS with JetStream, the model server, the proxy in front of it, a worker.
nats-server -js -p "$NATS_PORT" -sd "$DIR/nats" >"$DIR/nats.log" 2>&1 &
wait_for nats-server bash -c "echo > /dev/tcp/127.0.0.1/$NATS_PORT"
$VIGIL stub --listen "$STUB" 2>"$DIR/stub.log" &
$VIGIL proxy --listen "$PROXY" --upstream "http://$STUB/v1" --app support --nats "$NATS" 2>"$DIR/proxy.log" &
$VIGIL worker --nats "$NATS" 2>"$DIR/worker.log" &

# 2. The monitor: every answer must be JSON; windows of 500 captures.
cat > "$DIR/monitor.yaml" <<'YAML'
name: support-json
app: support
batch: 32
batch_wait_ms: 200
window: {duration_s: 3600, max_items: 500}
scorers:
  - {name: json, kind: json_valid}
metrics:
  latency: {max_ms: 1000}
drift: {alpha: 0.001, reference_items: 500}
YAML
$VIGIL monitor "$DIR/monitor.yaml" --nats "$NATS" 2>"$DIR/monitor.log" &
MONITOR=$!
wait_for "the proxy" bash -c "echo > /dev/tcp/${PROXY%:*}/${PROXY#*:}"

# 3. Traffic: GOOD answers that are JSON, then the model breaks: BAD that are not.
ask() { # ask REPLY: one chat request through the proxy; the stub answers REPLY
  curl -sf "http://$PROXY/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"say [[reply: $1]]\"}]}" >/dev/null
}
t0=$(now)
for i in $(seq 1 "$GOOD"); do ask "{\\\"ok\\\": true, \\\"i\\\": $i}"; done
for i in $(seq 1 "$BAD"); do ask "sorry, no JSON today ($i)"; done
t1=$(now)

# 4. Windows are summarised as their results come in; the alarm is in the monitor's log.
windows=$(( (GOOD + BAD) / 500 ))
wait_for "$windows window summaries" bash -c \
  "[ \$($VIGIL runs list --suite support-json --json --nats $NATS | wc -l) -ge $windows ]"
t2=$(now)
$VIGIL runs list --suite support-json --nats "$NATS"
grep 'drift alarm' "$DIR/monitor.log" || echo "no drift alarm"
echo "requests: $((GOOD + BAD)) through the proxy in $(echo "$t1 - $t0" | bc) s;" \
     "last window summarised $(echo "$t2 - $t1" | bc) s after the last request"
