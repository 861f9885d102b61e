#!/usr/bin/env bash
# The main job: a live test pattern with audio goes out through rtmpsink to
# a local nginx-rtmp (started here) and comes back through rtmpsrc; every
# frame is compared, per pad, and the end-to-end latency measured.
# No outside server is needed.
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

cargo build --release --quiet --example rtmp_demo
# Any arguments are more rtmpsink properties (scripts/demo.sh sync=false),
# or rtmpsrc's with a prefix (rtmpsrc.pad-queues=false).
target/release/examples/rtmp_demo "rtmp://127.0.0.1:$port/live/demo" 10 "$*"
