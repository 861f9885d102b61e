#!/usr/bin/env bash
# Installs what the project needs on Debian 12: GStreamer development files
# and plugins, nginx with the RTMP module, FFmpeg, Chromium with its driver
# and Selenium (the web studio's browser tests), and the Rust components
# the checks use. Safe to run again: it only installs what is missing.
set -euo pipefail

packages=(
  pkg-config libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  nginx libnginx-mod-rtmp libnginx-mod-stream ffmpeg procps iproute2 ethtool
  glib-networking openssl ca-certificates
  chromium chromium-driver
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# FFmpeg 9 (a static build, from PyPI): the second FFmpeg the interop
# tests use, beside Debian's 5.1.
if ! python3 -c 'import imageio_ffmpeg' >/dev/null 2>&1; then
  echo "setup: installing imageio-ffmpeg (FFmpeg 9) from PyPI"
  python3 -m pip install -q imageio-ffmpeg 2>/dev/null \
    || python3 -m pip install -q --break-system-packages imageio-ffmpeg
fi

# Selenium (from PyPI): the web studio's browser tests drive Chromium with it.
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
  echo "setup: installing selenium from PyPI"
  python3 -m pip install -q selenium 2>/dev/null \
    || python3 -m pip install -q --break-system-packages selenium
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust 1.92 or newer (rustup.rs) and run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
  # The protocol core's browser build (scripts/test.sh checks it).
  rustup target list --installed 2>/dev/null | grep -q "^wasm32-unknown-unknown" \
    || rustup target add wasm32-unknown-unknown \
    || echo "setup: could not add the wasm32-unknown-unknown target (offline?); its check will be skipped" >&2
fi
echo "setup: ready"
