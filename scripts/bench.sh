#!/usr/bin/env bash
# Regenerates the measured parts of docs/performance.md on this checkout
# (release build; run it on a quiet machine: every number is compared with a
# ceiling measured in the same run, but a busy machine still lowers both):
#
#   bash scripts/bench.sh              # the benchmark, soak excluded (about 10 min on 2 cores)
#   bash scripts/bench.sh --soak       # then the 10-minute capture-proxy soak as well
#   bash scripts/bench.sh --soak-only  # only the soak (SOAK_SECONDS, default 600)
#   bash scripts/bench.sh --quick      # every row on a few hundred items: checks the harness,
#                                      # prints the tables, writes nothing
#
# Each writes only its own part of docs/performance.md, between the markers
# <!-- bench:begin ... --> / <!-- bench:end --> (the benchmark) and
# <!-- bench:soak:begin ... --> / <!-- bench:soak:end --> (the soak); the
# rest of the file is left as it is. Every row states the commit it ran on
# (git rev-parse --short HEAD, "-dirty" when tracked files differ), and the
# top of each part the date and the load average. Arguments after `--` go to
# vigil-bench (see `target/release/vigil-bench --help`). `wrk` is used for a
# second ceiling where installed (`apt-get install -y wrk`); without it the
# row says "wrk not installed".
set -euo pipefail
cd "$(dirname "$0")/.."
export VIGIL_HOME="${VIGIL_HOME:-$HOME/.vigil}"
doc=docs/performance.md
bench=yes soak=no quick=() write=(--write "$doc")
while [[ $# -gt 0 ]]; do
    case "$1" in
    --soak) soak=yes ;;
    --soak-only) soak=yes bench=no ;;
    --quick) quick=(--quick) write=() ;;
    --) shift; break ;;
    *) echo "bench.sh: unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
echo "bench.sh: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo -dirty), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs" >&2
command -v wrk >/dev/null || echo "bench.sh: wrk not installed (apt-get install -y wrk): its ceiling row will say so" >&2
cargo build --release --locked -p vigil -p vigil-bench --bins
if [[ $bench == yes ]]; then
    target/release/vigil-bench "${quick[@]}" "${write[@]}" "$@"
fi
if [[ $soak == yes ]]; then
    seconds="${SOAK_SECONDS:-600}"
    [[ ${#quick[@]} -eq 0 ]] || seconds=20
    target/release/vigil-bench soak --seconds "$seconds" "${write[@]}"
fi
