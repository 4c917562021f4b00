#!/usr/bin/env bash
# OpenCV (pulled in by mediapipe) needs libGL and GLib from the system.
# Installs them with apt when they are missing and we are allowed to.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' && ldconfig -p 2>/dev/null | grep -q 'libgthread-2.0.so.0'; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null
else
  echo "henshin needs libgl1 and libglib2.0-0: sudo apt-get install libgl1 libglib2.0-0" >&2
  exit 1
fi
