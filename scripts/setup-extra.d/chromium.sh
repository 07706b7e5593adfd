# Headless Chromium for the report test (tests/qa_report.rs renders report.html
# and checks that its charts are drawn). Installed only as root and only when
# missing; without it that test says so and skips the browser part.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing chromium (Debian package) for the report test"
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
            || echo "setup: could not install chromium; the report test will skip the browser check" >&2
    else
        echo "setup: chromium missing and not root; the report test will skip the browser check" >&2
    fi
fi
