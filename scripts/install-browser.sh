#!/usr/bin/env bash
# Debian's chromium (driven by Playwright) and CJK fonts for the browser tests. No browser download.
set -euo pipefail
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-browser: run as root, or install chromium and fonts-noto-cjk yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
