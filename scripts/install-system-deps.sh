#!/usr/bin/env bash
# System tools the test suite uses: dciodvfy (Debian package dicom3tools) validates every DICOM output;
# Chromium (Debian package chromium) runs the viewer's browser test; Orthanc with its DICOMweb plugin and
# dcmtk (storescu, echoscu, dcmcjpls, ...) are the real PACS and modality the DICOM node is tested against.
# Orthanc's system service is not used: each test starts its own Orthanc process.
set -u
PACKAGES="dicom3tools chromium orthanc orthanc-dicomweb dcmtk"
have_all() {
  command -v dciodvfy >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && command -v Orthanc >/dev/null 2>&1 \
    && command -v storescu >/dev/null 2>&1 && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]
}
have_all && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "warning: system tools missing and not root: install the Debian packages $PACKAGES" >&2; exit 0
  fi
fi
if command -v apt-get >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $PACKAGES >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q $PACKAGES >/dev/null 2>&1; } \
    || echo "warning: could not install $PACKAGES; DICOM validation, browser and DICOM node tests will fail" >&2
else
  echo "warning: no apt-get: install $PACKAGES by hand for the tests" >&2
fi
exit 0
