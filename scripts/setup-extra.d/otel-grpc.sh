# shellcheck shell=bash
# Sourced by scripts/setup.sh: a real OTLP/gRPC receiver for the gRPC
# tracing test (tests/otel_grpc.rs). PyPI `rotel` ships the Rust collector
# `rotel-agent` (gRPC and HTTP receivers); the test has it forward what it
# receives over OTLP/HTTP to oteltap (otel.sh), whose NDJSON the test reads.
# Installed without root into $VIGIL_HOME/pypi/rotel, with a wrapper in
# $VIGIL_HOME/bin. Idempotent.
rotel_version="0.0.1a15"
rotel_dir="$VIGIL_HOME/pypi/rotel"
if [ "$(cat "$rotel_dir/.version" 2>/dev/null)" != "$rotel_version" ] || [ ! -x "$rotel_dir/rotel/rotel-agent" ]; then
  rm -rf "$rotel_dir"
  if python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$rotel_dir" "rotel==$rotel_version"; then
    echo "$rotel_version" > "$rotel_dir/.version"
    echo "setup: installed rotel $rotel_version into $rotel_dir"
  else
    echo "setup: pip could not install rotel $rotel_version (the gRPC tracing test will fail)" >&2
  fi
fi
mkdir -p "$VIGIL_HOME/bin"
if [ -x "$rotel_dir/rotel/rotel-agent" ]; then
  ln -sf "$rotel_dir/rotel/rotel-agent" "$VIGIL_HOME/bin/rotel-agent"
fi
unset rotel_version rotel_dir
