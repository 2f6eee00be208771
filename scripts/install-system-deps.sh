#!/usr/bin/env bash
# System tools the test suite uses: dciodvfy (Debian package dicom3tools) validates every DICOM output;
# Chromium (Debian package chromium) runs the viewer's browser test.
set -u
command -v dciodvfy >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "warning: dciodvfy or chromium missing and not root: install the Debian packages dicom3tools chromium" >&2; exit 0
  fi
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get install -y -q dicom3tools chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dicom3tools chromium >/dev/null 2>&1; } \
    || echo "warning: could not install dicom3tools and chromium; DICOM validation and browser tests will fail" >&2
else
  echo "warning: no apt-get: install dicom3tools (dciodvfy) and chromium by hand for the tests" >&2
fi
exit 0
