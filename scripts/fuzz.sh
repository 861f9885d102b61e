#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 75 s each, 10 minutes
# in all), seeded from golden traffic that FFmpeg and nginx-rtmp exchange
# in tests/golden.rs. Crashes land in fuzz/artifacts/<target>/; once fixed,
# copy the input to fuzz/regressions/<target>/ so that `cargo test` replays it.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-75}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(chunk amf0 amf3 flv_tag handshake command client_session server_session auth codec url)

scripts/setup.sh >/dev/null
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly flags; the stable compiler accepts them so.
export RUSTC_BOOTSTRAP=1

if [ ! -d fuzz/corpus/chunk ]; then
  echo "fuzz: recording golden traffic for seeds"
  GOLDEN_DUMP_DIR="$PWD/fuzz/corpus" cargo test -q --test golden >/dev/null
fi

# Locations and reconnect tcUrls (location, a newline, tcUrl) to start from.
if [ ! -d fuzz/corpus/url ]; then
  mkdir -p fuzz/corpus/url
  i=0
  for s in 'rtmp://u:p%40ss@h:1935/live/key?t=1\nrtmp://b.example/other' \
           'rtmps://[::1]/app/inst/mp4:dir/f.mp4\n//[2001:db8::1]:1940/x/' \
           'rtmp://h/app?token=a/key\n/moved' 'RTMP://h/a\nsibling' \
           'rtmp://h/x/y app=vod playpath=mp4:a\\20b.mp4 live=1 conn=O:1 conn=NS:k:v conn=O:0\n/moved'; do
    printf "$s" >"fuzz/corpus/url/seed$i"; i=$((i + 1))
  done
fi

summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/target/$t.log"
  mkdir -p fuzz/target
  echo "fuzz: $t for ${secs}s"
  status=ok
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=CRASH
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 || true)
  summary+=("$(printf '%-15s %-6s %12s execs  %s' "$t" "$status" "$execs" "$cov")")
done
printf '%s\n' "${summary[@]}"
printf '%s\n' "${summary[@]}" | grep -q CRASH && { echo "fuzz: crashes in fuzz/artifacts/"; exit 1; }
echo "fuzz: no crash"
