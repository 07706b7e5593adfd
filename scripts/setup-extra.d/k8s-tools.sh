# shellcheck shell=bash
# Tools for the offline Kubernetes manifest checks (tests/k8s_manifests.rs).
# Sourced by scripts/setup.sh, which sets VIGIL_HOME; safe to source twice.
#
# - kubernetes-validate (PyPI): validates rendered objects against the bundled
#   OpenAPI schemas of Kubernetes 1.25-1.37, offline. Installed without root
#   into $VIGIL_HOME/pypi/kubernetes-validate, with a wrapper in $VIGIL_HOME/bin.
# - kubectl: renders the kustomize overlays (`kubectl kustomize`); expected on
#   the machine image, only checked here (the manifest tests fail without it).

k8s_tools_setup() {
    local home="${VIGIL_HOME:-$PWD/.vigil}"
    local version="1.37.0"
    local target="$home/pypi/kubernetes-validate"
    local wrapper="$home/bin/kubernetes-validate"
    local py
    # The real interpreter, not a pyenv shim: the package's compiled
    # dependencies (rpds-py) only load in the Python that installed them.
    py="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
    mkdir -p "$home/bin"

    if [ -z "$py" ]; then
        echo "k8s-tools: python3 not found; kubernetes-validate not installed: tests/k8s_manifests.rs will fail until it is" >&2
    elif [ -x "$wrapper" ] && [ "$(cat "$target/.version" 2>/dev/null)" = "$version $py" ]; then
        echo "k8s-tools: kubernetes-validate $version already installed"
    else
        echo "k8s-tools: installing kubernetes-validate $version into $target"
        rm -rf "$target"
        if PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-input \
            --target "$target" "kubernetes-validate==$version"; then
            echo "$version $py" >"$target/.version"
            cat >"$wrapper" <<WRAP
#!/bin/sh
PYTHONPATH="$target\${PYTHONPATH:+:\$PYTHONPATH}" exec "$py" -m kubernetes_validate "\$@"
WRAP
            chmod +x "$wrapper"
        else
            echo "k8s-tools: pip could not install kubernetes-validate $version: tests/k8s_manifests.rs will fail until it is" >&2
        fi
    fi

    if command -v kubectl >/dev/null 2>&1; then
        echo "k8s-tools: $(kubectl version --client 2>/dev/null | head -n 1)"
    else
        # Debian's kubernetes-client (1.20) is too old for the overlays' kustomize fields.
        echo "k8s-tools: kubectl not found: install kubectl 1.27 or newer (https://kubernetes.io/docs/tasks/tools/); tests/k8s_manifests.rs fails without it" >&2
    fi
}

k8s_tools_setup
unset -f k8s_tools_setup
