#!/usr/bin/env bash
# `scripts/ensure-package.sh COMMAND PACKAGE WHY`: install Debian's PACKAGE when COMMAND is
# missing and this machine can (as root, with apt-get); otherwise say what is missing and why.
# `make test` uses it for Chromium (the browser tests drive it through Playwright's
# executable_path), `make run` and `make test` for bubblewrap (sandboxed steps, and the local
# workers of `orchestra server --workers N`, which sandbox every step: docs/isolation.md).
set -euo pipefail
command_name=$1 package=$2 why=$3
if command -v "$command_name" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's $package $why" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$package" >/dev/null
else
    echo "$command_name is missing: install Debian's $package package $why" >&2
fi
