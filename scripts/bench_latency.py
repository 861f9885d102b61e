#!/usr/bin/env python3
"""Latency benchmark: how long a live frame spends inside rtmpsink (from
entering its pad to leaving through the socket) and inside rtmpsrc (from
the socket to leaving its pad), and end to end through a local
nginx-rtmp: the demo (scripts/demo.sh: a live 720p30 H.264 test pattern
and AAC, 10 s) run several times, with `sync=false` and with the default
`sync=true`. The figures inside the elements are the p50 and p99 the
elements' `stats` give (their last 1024 frames of each kind); the end to
end ones the demo measures between probes on rtmpsink's and rtmpsrc's pads.
A third set of runs has rtmpsrc push on its pads from its streaming thread
(`pad-queues=false`), a fourth also has rtmpsink send each frame as it
comes (`interleave=false`: audio does not wait for the video of its time).
Medians over the runs.

  scripts/bench_latency.py [runs]     (5 unless told; about 30 s a run)
"""
import os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

FIGURES = [
    ("end to end", r"latency: .* median ([\d.]+) ms"),
    ("end to end video p50", r"video p50 ([\d.]+) ms, p99 [\d.]+ ms; audio p50 [\d.]+ ms, p99 [\d.]+ ms\n"),
    ("rtmpsink video p50", r"rtmpsink \(pad -> socket\) video p50 ([\d.]+)"),
    ("rtmpsink video p99", r"rtmpsink \(pad -> socket\) video p50 [\d.]+ ms, p99 ([\d.]+)"),
    ("rtmpsink audio p50", r"rtmpsink \(pad -> socket\) .*audio p50 ([\d.]+)"),
    ("rtmpsink audio p99", r"rtmpsink \(pad -> socket\) .*audio p50 [\d.]+ ms, p99 ([\d.]+)"),
    ("rtmpsrc video p50", r"rtmpsrc \(socket -> pad\)  video p50 ([\d.]+)"),
    ("rtmpsrc video p99", r"rtmpsrc \(socket -> pad\)  video p50 [\d.]+ ms, p99 ([\d.]+)"),
    ("rtmpsrc audio p50", r"rtmpsrc \(socket -> pad\) .*audio p50 ([\d.]+)"),
    ("rtmpsrc audio p99", r"rtmpsrc \(socket -> pad\) .*audio p50 [\d.]+ ms, p99 ([\d.]+)"),
]


def run(props):
    out = subprocess.run([os.path.join(ROOT, "scripts/demo.sh"), props], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0 or "demo: ok" not in out.stdout:
        sys.exit(f"the demo failed:\n{out.stdout}\n{out.stderr[-2000:]}")
    got = {}
    for name, pattern in FIGURES:
        m = re.search(pattern, out.stdout)
        if not m:
            sys.exit(f"no '{name}' in the demo's output:\n{out.stdout}")
        got[name] = float(m.group(1))
    return got


SETUPS = [
    ("sync=false", "sync=false"),
    ("sync=true", "sync=true (default)"),
    ("sync=false rtmpsrc.pad-queues=false", "sync=false, rtmpsrc pad-queues=false"),
    ("sync=false interleave=false rtmpsrc.pad-queues=false", "the same and interleave=false"),
]


def main():
    print(f"bench: the demo {RUNS} times each way, every frame checked by the demo; medians (ms)")
    results = {}
    for props, _ in SETUPS:
        runs = [run(props) for _ in range(RUNS)]
        results[props] = {n: statistics.median(r[n] for r in runs) for n, _ in FIGURES}
    for n, (_, title) in enumerate(SETUPS):
        print(f"  ({n + 1}) {title}")
    print(f"{'':24}" + "".join(f"{f'({n + 1})':>10}" for n in range(len(SETUPS))))
    for name, _ in FIGURES:
        print(f"{name:24}" + "".join(f"{results[p][name]:10.2f}" for p, _ in SETUPS))


if __name__ == "__main__":
    main()
