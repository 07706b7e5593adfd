#!/usr/bin/env bash
# Installs the pinned reference implementations (no root, under $VIGIL_HOME)
# and regenerates worker/tests/fixtures/text_metrics_reference.json.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIGIL_HOME="${VIGIL_HOME:-${HOME:-$repo}/.vigil}"
target="$VIGIL_HOME/pypi/text-metrics"
if ! PYTHONPATH="$target" python3 -c 'import rouge_score, sacrebleu' 2>/dev/null; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$target" "rouge-score==0.1.2" "sacrebleu==2.6.0"
fi
cd "$repo"
PYTHONPATH="$target" python3 scripts/text-metrics-reference.py "$@"
