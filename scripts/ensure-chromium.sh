#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright with executable_path). `make test`
# installs it when it is missing and this machine can: as root, with apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
else
    echo "chromium is missing: install Debian's chromium package for the browser tests" >&2
fi
