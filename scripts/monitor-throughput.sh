#!/usr/bin/env bash
# Side by side, on one nats-server and one `vigil worker`: N recorded outputs
# scored (json_valid) by a suite run (`vigil run`, target kind `recorded`)
# and the same N as captures scored by `vigil monitor`. Prints items/s of
# both. docs/production.md, "The loop on one machine".
#
#   scripts/monitor-throughput.sh [N]        (default 20000)
#
# Needs `vigil` (VIGIL=path), `nats-server` and python3 with nats-py and
# msgpack (PYTHONPATH; scripts/setup.sh puts them in ~/.vigil/pypi/interop).
set -euo pipefail
N=${1:-20000}
VIGIL=${VIGIL:-vigil}
PORT=${NATS_PORT:-14333}
NATS=nats://127.0.0.1:$PORT
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
now() { date +%s.%N; }
nats-server -js -p "$PORT" -sd "$DIR/nats" >"$DIR/nats.log" 2>&1 &
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
$VIGIL setup-streams --nats "$NATS" >/dev/null
$VIGIL worker --nats "$NATS" --concurrency 64 2>"$DIR/worker.log" &

# The suite: N items whose recorded output is valid JSON.
python3 - "$DIR/data.jsonl" "$N" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"id": f"r{i}", "q": f"question {i}", "output": json.dumps({"i": i})}) + "\n")
PY
cat > "$DIR/suite.yaml" <<YAML
name: recorded-json
dataset: {path: data.jsonl, id_field: id}
prompt: {user: "{{ q }}"}
targets: [{name: prod, kind: recorded}]
scorers: [{name: json, kind: json_schema, schema: {}}]
YAML
t0=$(now)
$VIGIL run "$DIR/suite.yaml" --nats "$NATS" --workers 0 --out "$DIR/run.json" >/dev/null 2>"$DIR/run.log"
t1=$(now)

# The same N as captures, published first, then one monitor scores them.
python3 - "$NATS" "$N" <<'PY'
import asyncio, sys, msgpack, nats
async def main(url, n):
    nc = await nats.connect(url)
    js = nc.jetstream()
    acks = []
    for i in range(n):
        c = {"capture_id": f"c{i}", "request_id": f"q{i}", "app": "bench", "endpoint": "chat",
             "prompt": f"question {i}", "response_text": '{"i": %d}' % i, "status": 200,
             "latency_ms": 1.0, "time": "2026-11-30T12:00:00Z"}
        acks.append(js.publish("vigil.capture.bench", msgpack.packb(c),
                               headers={"Content-Type": "application/msgpack", "Vigil-Schema": "3",
                                        "Nats-Msg-Id": c["capture_id"]}))
        if len(acks) >= 256:
            await asyncio.gather(*acks); acks = []
    await asyncio.gather(*acks)
    await nc.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
PY
cat > "$DIR/monitor.yaml" <<YAML
name: bench-json
app: bench
batch: 256
batch_wait_ms: 200
window: {duration_s: 1000000000, max_items: $N}
scorers: [{name: json, kind: json_valid}]
drift: {enabled: false}
YAML
t2=$(now)
$VIGIL monitor "$DIR/monitor.yaml" --nats "$NATS" 2>"$DIR/monitor.log" &
until [ "$($VIGIL runs list --suite bench-json --json --nats "$NATS" 2>/dev/null | wc -l)" -ge 1 ]; do sleep 0.2; done
t3=$(now)
python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$DIR/run.json" <<'PY'
import json, sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:6])
run = json.load(open(sys.argv[6]))
print(f"suite run (recorded target): {n} items in {t1-t0:.1f} s = {n/(t1-t0):.0f} items/s (passed {run['scores']['json']['passed']})")
print(f"vigil monitor (captures):    {n} items in {t3-t2:.1f} s = {n/(t3-t2):.0f} items/s")
print(f"ratio monitor/suite: {(n/(t3-t2))/(n/(t1-t0)):.2f}")
PY
