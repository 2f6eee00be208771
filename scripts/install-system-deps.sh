#!/usr/bin/env bash
# System tools the test suite uses: dciodvfy (Debian package dicom3tools) validates every DICOM output.
set -u
command -v dciodvfy >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "warning: dciodvfy missing and not root: install the Debian package dicom3tools" >&2; exit 0
  fi
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get install -y -q dicom3tools >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dicom3tools >/dev/null 2>&1; } \
    || echo "warning: could not install dicom3tools (dciodvfy); DICOM validation tests will not run" >&2
else
  echo "warning: no apt-get: install dicom3tools (dciodvfy) by hand for the DICOM validation tests" >&2
fi
exit 0
