#!/usr/bin/env bash
# What the browser tests (tests/test_browser.py) need beyond the project: Debian's Chromium and
# the Python playwright package in .venv. Playwright drives /usr/bin/chromium; it never downloads
# a browser of its own (so never run `playwright install` here).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    for attempt in 1 2 3; do
        if $SUDO apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; then
            break
        fi
        echo "browser-setup: apt-get failed (attempt $attempt), retrying" >&2
        sleep 10
        [ "$attempt" -eq 3 ] && { echo "browser-setup: cannot install chromium" >&2; exit 1; }
    done
fi
/usr/bin/chromium --version 2>/dev/null | head -1 || true

PYTHON="${PYTHON:-python3}"
test -x .venv/bin/python || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet -c constraints.txt "playwright>=1.40"
