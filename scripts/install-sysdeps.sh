#!/usr/bin/env bash
# Debian/Ubuntu packages avatar_agent needs. Idempotent: installs only what is missing.
#   install-sysdeps.sh runtime   libraries the program loads (PortAudio, OpenCV's GL/GLib/X libs)
#   install-sysdeps.sh test      + the virtual audio/video devices used by the e2e tests
#                                  (PulseAudio, Xvfb, xdotool, ImageMagick) and espeak-ng/sox
#                                  and chromium (headless browser for the serve tests)
set -euo pipefail
RUNTIME="libportaudio2 libgl1 libglib2.0-0 libsm6 libice6 libxext6 libxcursor1 fonts-dejavu-core"
TEST="pulseaudio pulseaudio-utils libasound2-plugins xvfb x11-utils xdotool imagemagick espeak-ng sox chromium"
case "${1:-runtime}" in
  runtime) PKGS="$RUNTIME" ;;
  test) PKGS="$RUNTIME $TEST" ;;
  *) echo "usage: $0 runtime|test" >&2; exit 2 ;;
esac
missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"; done)
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-sysdeps: please install these packages with your package manager:" $missing >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-sysdeps: installing:" $missing
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
