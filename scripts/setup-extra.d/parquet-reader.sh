# shellcheck shell=bash
# Sourced by scripts/setup.sh: an independent Parquet reader (PyPI pyarrow)
# for the export test (tests/export_parquet.rs), installed without root into
# $VIGIL_HOME/pypi/pyarrow, with a `vigil-pyarrow` wrapper (python3 with
# pyarrow importable) in $VIGIL_HOME/bin. Idempotent.
pyarrow_version="26.0.1"
pyarrow_dir="$VIGIL_HOME/pypi/pyarrow"
# The real interpreter, not a shim: pyarrow's compiled modules only load in
# the Python that installed them.
pyarrow_python="$(python3 -c 'import sys; print(sys.executable)')"
if [ "$(cat "$pyarrow_dir/.version" 2>/dev/null)" != "$pyarrow_version $pyarrow_python" ]; then
  rm -rf "$pyarrow_dir"
  if python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$pyarrow_dir" "pyarrow==$pyarrow_version"; then
    echo "$pyarrow_version $pyarrow_python" > "$pyarrow_dir/.version"
    echo "setup: installed pyarrow $pyarrow_version into $pyarrow_dir"
  else
    echo "setup: pip could not install pyarrow $pyarrow_version (the parquet export test will fail)" >&2
  fi
fi
mkdir -p "$VIGIL_HOME/bin"
cat > "$VIGIL_HOME/bin/vigil-pyarrow" <<WRAPPER
#!/bin/sh
PYTHONPATH="$pyarrow_dir\${PYTHONPATH:+:\$PYTHONPATH}" exec "$pyarrow_python" "\$@"
WRAPPER
chmod +x "$VIGIL_HOME/bin/vigil-pyarrow"
unset pyarrow_version pyarrow_dir pyarrow_python
