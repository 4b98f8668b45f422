#!/usr/bin/env bash
# Sandboxed steps run under bubblewrap (docs/isolation.md), and the local workers of
# `orchestra server --workers N` sandbox every step. `make run` and `make test` install Debian's
# bubblewrap when it is missing and this machine can: as root, with apt-get.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's bubblewrap for sandboxed steps" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null
else
    echo "bubblewrap is missing: install Debian's bubblewrap package to run steps in a sandbox" >&2
fi
