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
# The plugin file itself (tests/plugin.rs loads it with gst-inspect-1.0);
# `cargo test` alone builds only the rlib.
cargo build --locked
cargo test --locked
