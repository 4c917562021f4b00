#!/usr/bin/env bash
# System packages henshin needs, installed with apt when missing and we are allowed to:
# - libGL and GLib for OpenCV (pulled in by mediapipe) — required;
# - Xvfb, xdotool and xwd (x11-apps) for the preview-window tests, which run under a
#   virtual X screen — optional: without them those tests are skipped, saying why;
# - Chromium and its WebDriver for the control panel's browser test (headless, through
#   Selenium) — optional too: without them that test is skipped, saying why.
set -euo pipefail

have_libs() {
  ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' && ldconfig -p 2>/dev/null | grep -q 'libgthread-2.0.so.0'
}
have_x_tools() {
  command -v Xvfb >/dev/null && command -v xdotool >/dev/null && command -v xwd >/dev/null
}
have_browser() {
  { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } && command -v chromedriver >/dev/null
}

can_apt=false
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  can_apt=true
fi

wanted=()
have_libs || wanted+=(libgl1 libglib2.0-0)
have_x_tools || wanted+=(xvfb xdotool x11-apps)
have_browser || wanted+=(chromium chromium-driver)
if [ ${#wanted[@]} -eq 0 ]; then
  exit 0
fi
if $can_apt; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
  exit 0
fi
if ! have_libs; then
  echo "henshin needs libgl1 and libglib2.0-0: sudo apt-get install libgl1 libglib2.0-0" >&2
  exit 1
fi
if ! have_x_tools; then
  echo "note: the preview-window tests need xvfb, xdotool and x11-apps (sudo apt-get install xvfb xdotool x11-apps);" \
       "without them they are skipped." >&2
fi
if ! have_browser; then
  echo "note: the control panel's browser test needs Chromium and its driver (sudo apt-get install chromium" \
       "chromium-driver); without them it is skipped." >&2
fi
