# Sourced by scripts/setup.sh: a real OTLP/HTTP receiver for the tracing test
# (PyPI oteltap: prints every span it receives as NDJSON), installed without
# root, with a wrapper in $VIGIL_HOME/bin.
otel="$VIGIL_HOME/pypi/otel"
if ! PYTHONPATH="$otel" python3 -c 'import oteltap' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$otel" "oteltap==1.0.0"
  echo "setup: installed oteltap into $otel"
fi
mkdir -p "$VIGIL_HOME/bin"
# The interpreter the package was installed for, not whatever is first on PATH later.
otel_python="$(python3 -c 'import sys; print(sys.executable)')"
cat > "$VIGIL_HOME/bin/oteltap" <<WRAPPER
#!/bin/sh
PYTHONPATH="$otel\${PYTHONPATH:+:\$PYTHONPATH}" exec "$otel_python" -m oteltap "\$@"
WRAPPER
chmod +x "$VIGIL_HOME/bin/oteltap"
