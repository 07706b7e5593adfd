#!/usr/bin/env bash
# Builds the runtime image from a vigil binary built outside the image
# (Dockerfile stage `runtime-prebuilt`) and runs it: a worker container and a
# coordinator container (--network host, uid 65532, read-only root) evaluate a
# suite against a nats-server and a stub backend on the host; the run's
# summary is checked. Prints the image's size and the run's time.
#
# Not part of the test suite: it needs a container engine and, where no
# container registry can be reached, a Debian base made from Debian packages
# (debootstrap --variant=minbase, a few minutes and ~200 MB), as root.
#
#   bash scripts/image-check.sh
#
# Environment:
#   ENGINE        podman or docker (default: podman if installed, else docker)
#   BASE_IMAGE    the runtime base (default: debian:bookworm-slim if it can be
#                 pulled, else localhost/vigil-base:bookworm made by debootstrap)
#   VIGIL_BINARY  the binary to package (default: target/release/vigil, built
#                 with `cargo build --release --locked --bin vigil` if missing)
#   COPIES        copies of examples/arithmetic.yaml's 200 items to run (default 10)
#   WORK          scratch directory (default: a new one under /tmp)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
say() { printf 'image-check: %s\n' "$*"; }
die() { printf 'image-check: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

WORK="${WORK:-$(mktemp -d /tmp/vigil-image-check.XXXXXX)}"
COPIES="${COPIES:-10}"
VIGIL_HOME="${VIGIL_HOME:-$HOME/.vigil}"
IMAGE=localhost/vigil:check
mkdir -p "$WORK"

# --- engine ---------------------------------------------------------------------
ENGINE="${ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
    if have podman; then ENGINE=podman; elif have docker; then ENGINE=docker; else
        die "neither podman nor docker is installed (Debian: apt-get install podman runc)"
    fi
fi
engine=("$ENGINE")
if [[ "$ENGINE" == podman ]]; then
    # On hosts with hybrid cgroups crun fails and setting rlimits is refused:
    # runc, cgroupfs and no default ulimits work (docs/kubernetes.md).
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' >"$WORK/containers.conf"
    export CONTAINERS_CONF="$WORK/containers.conf"
    if have runc; then engine+=(--runtime runc); fi
fi
say "engine: ${engine[*]}"

# --- binary ---------------------------------------------------------------------
binary="${VIGIL_BINARY:-target/release/vigil}"
if [[ ! -x "$binary" ]]; then
    [[ -z "${VIGIL_BINARY:-}" ]] || die "$binary is not an executable"
    say "building the release binary"
    cargo build --release --locked --bin vigil
fi
ctx="$WORK/context"
mkdir -p "$ctx/dist"
cp Dockerfile "$ctx/Dockerfile"
# The image needs no line tables (panics still name their message and the
# function symbols stay): strip the debug info only.
strip --strip-debug -o "$ctx/dist/vigil" "$binary"
say "binary: $(du -h "$binary" | cut -f1) as built, $(du -h "$ctx/dist/vigil" | cut -f1) stripped of debug info"

# --- base -----------------------------------------------------------------------
base="${BASE_IMAGE:-}"
if [[ -z "$base" ]]; then
    if "${engine[@]}" image exists localhost/vigil-base:bookworm 2>/dev/null \
        || "${engine[@]}" image inspect localhost/vigil-base:bookworm >/dev/null 2>&1; then
        base=localhost/vigil-base:bookworm
    elif timeout 60 "${engine[@]}" pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
        base=docker.io/library/debian:bookworm-slim
    else
        have debootstrap || die "no registry reachable and no debootstrap (apt-get install debootstrap)"
        [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
        say "no registry reachable: making a Debian bookworm minbase with debootstrap (a few minutes)"
        rootfs="$WORK/rootfs"
        debootstrap --variant=minbase bookworm "$rootfs" >"$WORK/debootstrap.log" 2>&1 \
            || die "debootstrap failed; see $WORK/debootstrap.log"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | "${engine[@]}" import - localhost/vigil-base:bookworm >/dev/null
        rm -rf "$rootfs"
        base=localhost/vigil-base:bookworm
    fi
fi
say "base: $base"

# --- build ----------------------------------------------------------------------
t0=$(date +%s)
"${engine[@]}" build --network host --target runtime-prebuilt \
    --build-arg RUNTIME_IMAGE="$base" --build-arg VIGIL_BINARY=dist/vigil \
    -t "$IMAGE" "$ctx" >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; die "image build failed"; }
size=$("${engine[@]}" image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE in $(($(date +%s) - t0)) s: $((size / 1000 / 1000)) MB"
"${engine[@]}" run --rm --network host "$IMAGE" --version

# --- a run against the host's nats-server ----------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
containers=()
cleanup() {
    for c in "${containers[@]}"; do "${engine[@]}" rm -f "$c" >/dev/null 2>&1 || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

nats_server="${VIGIL_NATS_SERVER:-$VIGIL_HOME/bin/nats-server}"
[[ -x "$nats_server" ]] || die "no nats-server at $nats_server (run scripts/setup.sh)"
nats_port=$(free_port)
"$nats_server" -js -sd "$WORK/nats" -a 127.0.0.1 -p "$nats_port" >"$WORK/nats.log" 2>&1 &
pids+=($!)
stub_port=$(free_port)
"$binary" stub --listen "127.0.0.1:$stub_port" >"$WORK/stub.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && (echo >/dev/tcp/127.0.0.1/"$stub_port") 2>/dev/null && break
    sleep 0.1
done
nats="nats://127.0.0.1:$nats_port"
backend="http://127.0.0.1:$stub_port/v1"

suites="$WORK/suites"
out="$WORK/out"
mkdir -p "$suites/data" "$out"
chmod 0777 "$out" # written by uid 65532 in the container
# The arithmetic example against this stub, its dataset repeated COPIES times.
sed "s|base_url: http://127.0.0.1:8089/v1|base_url: $backend|" examples/arithmetic.yaml >"$suites/check.yaml"
grep -q "base_url: $backend" "$suites/check.yaml" || die "examples/arithmetic.yaml no longer names the stub's default URL"
python3 - examples/data/arithmetic.jsonl "$suites/data/arithmetic.jsonl" "$COPIES" <<'PY'
import sys, json
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(src) if l.strip()]
with open(dst, "w") as f:
    for k in range(copies):
        for r in rows:
            f.write(json.dumps(dict(r, id=f"{r['id']}-{k}")) + "\n")
PY
items=$(wc -l <"$suites/data/arithmetic.jsonl")
chmod -R a+rX "$suites"

# As the manifests run it: uid 65532, read-only root, an emptyDir-like /tmp.
run_flags=(--network host --user 65532:65532 --read-only --tmpfs /tmp)
worker=vigil-check-worker-$$
containers+=("$worker")
"${engine[@]}" run -d --name "$worker" "${run_flags[@]}" "$IMAGE" \
    worker --nats "$nats" --allow "$backend" --concurrency 32 >/dev/null
t0=$(date +%s.%N)
"${engine[@]}" run --rm "${run_flags[@]}" -v "$suites:/suites:ro" -v "$out:/out" "$IMAGE" \
    run /suites/check.yaml --nats "$nats" --workers 0 --no-progress --out /out/summary.json \
    || { "${engine[@]}" logs "$worker" | tail -n 20 >&2; die "the coordinator container failed"; }
t1=$(date +%s.%N)
python3 - "$out/summary.json" "$items" <<'PY'
import sys, json
s = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert s["items_total"] == n and s["items_scored"] == n and s["items_failed"] == 0, s
assert s["passed"], s
for name in ("exact", "numeric"):
    assert s["scores"][name]["n"] == n, s["scores"]
print(f"image-check: summary ok: {n} items scored, gates passed, "
      f"exact {s['scores']['exact']['pass_rate']:.3f}, run {s['run_id']}")
PY
uid=$("${engine[@]}" exec "$worker" id -u 2>/dev/null || echo "?")
say "worker container ran as uid $uid; coordinator container run took $(python3 -c "print(round($t1 - $t0, 1))") s for $items items"
say "ok"
