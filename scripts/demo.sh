#!/usr/bin/env bash
# The main job: a stream made here goes out through our RTMP core to a
# local nginx-rtmp and comes back through our core as a player; every
# frame is compared. No outside server is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null

work=$(mktemp -d)
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log info;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:$port; out_queue 16384;
  application live { live on; record off; } } }
CONF
mkdir -p "$work/logs"
nginx -p "$work" -c "$work/nginx.conf"

echo "demo: making 10 s of 720p H.264 (B-frames) + AAC with FFmpeg"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 10 -c:v libx264 -preset veryfast -bf 2 -g 60 -b:v 4M -pix_fmt yuv420p -c:a aac -b:a 128k \
  -f flv "$work/demo.flv"

cargo build --release --quiet --example core_roundtrip
echo "demo: publishing to and playing from nginx-rtmp on port $port"
target/release/examples/core_roundtrip "$work/demo.flv" "rtmp://127.0.0.1:$port/live/demo"
