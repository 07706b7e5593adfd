#!/usr/bin/env bash
# Runs vigil's whole test suite; extra arguments go to `cargo test`. Each crate's
# tests/ is one test binary named `it`, each file a module: the tests of one file
# run with `scripts/test.sh --test it e2e_run::`.
# Tests find nats-server through VIGIL_NATS_SERVER, then $VIGIL_HOME/bin (set up by
# scripts/setup.sh), then PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export VIGIL_HOME="${VIGIL_HOME:-${HOME:-$repo}/.vigil}"
# A cold build gains nothing from incremental compilation's bookkeeping (about
# a tenth of the workspace crates' compile time). setup.sh and test.sh must
# agree on it, or test.sh would build the workspace crates again.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if [[ -z "${VIGIL_NATS_SERVER:-}" && ! -x "$VIGIL_HOME/bin/nats-server" ]] && ! command -v nats-server >/dev/null 2>&1; then
    echo "test: nats-server not found (VIGIL_NATS_SERVER, $VIGIL_HOME/bin, PATH); run scripts/setup.sh first" >&2
    exit 1
fi
exec cargo test --workspace --locked --no-fail-fast "$@"
