#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, then every unit,
# property and real-peer test (nginx-rtmp and FFmpeg are started by the
# tests themselves on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# Benchmarks must at least build.
cargo bench --locked --no-run -q
# The protocol core stands alone: it builds for the browser (no sockets,
# no clock, no threads). The documentation of every crate of ours builds
# without a warning.
if rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null | xargs -r test -d; then
  cargo build --locked -q -p rtmp-proto --target wasm32-unknown-unknown
else
  echo "SKIPPED: the wasm32 build of rtmp-proto (rustup could not add the target)"
fi
RUSTDOCFLAGS="-D warnings" cargo doc --locked -q --workspace --no-deps
# The plugin file itself (tests/plugin.rs loads it with gst-inspect-1.0);
# `cargo test` alone builds only the rlib.
cargo build --locked
REQUIRE_PEERS=1 cargo test --locked
