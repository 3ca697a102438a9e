#!/usr/bin/env bash
# Chromium for the report's browser tests (Debian packages). Skipped when already present or
# when apt is unavailable; the browser tests then skip with a reason.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "note: could not install chromium; browser tests will be skipped" >&2
fi
exit 0
