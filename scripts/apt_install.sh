#!/usr/bin/env bash
# apt_install.sh PACKAGE PRESENT_IF NOTE: installs a Debian package when PRESENT_IF (a file, or a
# command on PATH) is missing. Needs apt and root or sudo; elsewhere it prints NOTE (what to do
# instead) and succeeds, so machines without apt still work: the default dataset
# (dataset-fashion-mnist; else data.root or data.download) and the browser of the MLflow UI test
# (chromium; else that test skips with a reason).
set -euo pipefail
package=$1 present_if=$2 note=$3
if [ -e "$present_if" ] || command -v "$present_if" >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no apt-get here to install $package; $note" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
  echo "note: not root and no sudo; run 'apt-get install $package' as root, or: $note" >&2
  exit 0
fi
echo "installing $package (Debian package) ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
