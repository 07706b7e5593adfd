# Sourced by scripts/setup.sh: a third-party NATS client (Python nats-py +
# msgpack) for the interoperability test, installed without root.
interop="$VIGIL_HOME/pypi/interop"
if ! PYTHONPATH="$interop" python3 -c 'import nats, msgpack' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$interop" "nats-py==2.16.0" "msgpack==1.2.4"
  echo "setup: installed nats-py and msgpack into $interop"
fi
