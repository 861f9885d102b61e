#!/usr/bin/env python3
"""Serve benchmark: one 4 Mbit/s stream to N loopback players, from

  ours   filesrc ! flvdemux ! parsers ! rtmpsink mode=server  (in real time)
  nginx  nginx-rtmp, with FFmpeg publishing the same file with -re

measured with the same load tool (examples/rtmp_load.rs: N players on one
thread, counting frames, bytes and frames lost). Reported per run: server
CPU (user+sys) per delivered megabyte, frames lost, and server memory per
player (peak RSS with the players, less the RSS before them, less the
largest GOP, which our server caches once for all). Then the ingest side:
K publishers at once into K `rtmpsrc mode=server` in one process
(examples/rtmp_ingest.rs; with the defaults, with pad-queues=false, and with
all K in one context (one shared thread, context-wait=20 and 50), without
pad queues and with them; every
publisher's frames counted) against nginx-rtmp taking the same K
streams, as publishers per CPU core.

  scripts/bench_serve.py [runs] [players...]     (default: 3 runs, 200 and 1000)
  scripts/bench_serve.py 5 0                      (the ingest side only)
  BENCH_MBIT=1 scripts/bench_serve.py 1 5000      (a 1 Mbit/s stream instead of 4)
  BENCH_PUBLISHERS=48 scripts/bench_serve.py 5 0  (48 publishers at once instead of 8)
  BENCH_INGEST=0 scripts/bench_serve.py 5 200 1000 (the players' side only)
  BENCH_ONLY="pad queues" scripts/bench_serve.py 5 0
                                                  (only the ingest set-ups whose
                                                  name has this in it; nginx
                                                  is always measured)

With 8 publishers the machine is nearly idle, so every wake-up of a thread
is one of an idle core (the dearest kind); with more, cores are busier
and both servers take more than one message per wake-up more often.
"""
import json, os, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, Nginx, media_4mbit, plugin_env, proc_cpu_fine, proc_mem,  # noqa: E402
                      raise_fd_limit, setup_and_build)

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
COUNTS = [int(a) for a in sys.argv[2:]] or [200, 1000]
SECS = 20
MBIT = int(os.environ.get("BENCH_MBIT", "4"))
PUBLISHERS = int(os.environ.get("BENCH_PUBLISHERS", "8"))
INGEST_SIDE = os.environ.get("BENCH_INGEST", "1") != "0"
LOAD = os.path.join(ROOT, "target", "release", "examples", "rtmp_load")
INGEST = os.path.join(ROOT, "target", "release", "examples", "rtmp_ingest")
# The ingest side, as a user would set rtmpsrc up: the defaults, and without
# the internal queue per pad (the streaming thread pushes on both pads).
INGEST_SETUPS = {
    "ours": "",
    "ours, pad-queues=false": "pad-queues=false",
    # One shared thread for all K, waking for every message it finds (the
    # wake-ups a load brings together are taken together).
    "ours, context, no wait": "context=ingest",
    "ours, context, no wait, pad-queues=false": "pad-queues=false context=ingest",
    # One shared thread for all K, waking at most every 20 or 50 ms (the
    # context properties): nginx's one worker per core, in GStreamer.
    "ours, context, wait 20 ms": "pad-queues=false context=ingest context-wait=20",
    "ours, context, wait 50 ms": "pad-queues=false context=ingest context-wait=50",
    # The same with the pad queues left on (the default): the context's
    # thread pushes directly where downstream keeps up.
    "ours, context, wait 20 ms, pad queues": "context=ingest context-wait=20",
    "ours, context, wait 50 ms, pad queues": "context=ingest context-wait=50",
}
ONLY = os.environ.get("BENCH_ONLY")
if ONLY is not None:
    INGEST_SETUPS = {name: props for name, props in INGEST_SETUPS.items() if ONLY in name}
    if not INGEST_SETUPS:
        sys.exit(f"bench: no ingest set-up's name has {ONLY!r} in it")


def ephemeral_range():
    """The kernel's range for outgoing connections' local ports."""
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_next_port = [None]


def free_port():
    """A port free now, below the kernel's range for outgoing connections:
    one it picks (bind to 0) is one the publishers' and players' own
    connections draw from, and with 48 publishers the server then often
    found a port taken by the time it listened."""
    lo, _ = ephemeral_range()
    if _next_port[0] is None:
        _next_port[0] = max(1024, lo - 12000)
    for _ in range(12000):
        p = _next_port[0]
        _next_port[0] = p + 1 if p + 1 < lo else max(1024, lo - 12000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    sys.exit("bench: no free port below the ephemeral range")


def wait_listen(port, proc, timeout=30, quiet=False):
    """Waits until `proc` (our server) listens on `port`: True. If it ended
    first, False when `quiet`, else says why and exits."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if quiet:
                print(f"bench: the server ended before listening on {port} ({err.strip()[-300:]}); again", flush=True)
                return False
            sys.exit(f"bench: the server ended ({proc.returncode}) before listening on {port}: {err[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return True
        except OSError:
            time.sleep(0.02)
    sys.exit(f"bench: nothing listens on {port} after {timeout} s")


def max_gop_bytes(media):
    """The largest GOP of the file (what a GOP cache holds at most)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "packet=size,flags", "-of", "csv=p=0", media],
                         check=True, capture_output=True, text=True).stdout
    best = cur = 0
    for l in out.splitlines():
        size, flags = l.split(",", 1)
        if "K" in flags:
            cur = 0
        cur += int(size)
        best = max(best, cur)
    return best


def load(url, players):
    p = subprocess.run([LOAD, url, str(players), str(SECS + 20)], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: load tool failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


class Sampler:
    """Peak RSS of a set of processes while something runs."""

    def __init__(self, pids):
        import threading
        self.pids, self.peak, self.stop = pids, 0, False
        self.t = threading.Thread(target=self.run); self.t.start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, sum(proc_mem(p) for p in self.pids))
            except OSError:
                pass
            time.sleep(0.05)

    def end(self):
        self.stop = True; self.t.join()
        return self.peak


def run_ours(media, players, env):
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/key"
    cmd = ["gst-launch-1.0", "-q", *f"filesrc location={media} ! flvdemux name=d d.video ! queue ! h264parse ! s.video d.audio ! queue ! aacparse ! s.audio rtmpsink name=s mode=server location={url} max-clients={players + 16}".split()]
    srv = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listen(port, srv)
    base = proc_mem(srv.pid)
    cpu0 = proc_cpu_fine(srv.pid)
    s = Sampler([srv.pid])
    r = load(url, players)
    peak = s.end()
    cpu = wait_cpu(srv) - cpu0
    if srv.returncode != 0:
        sys.exit(f"bench: rtmpsink server failed: {srv.stderr.read().decode(errors='replace')[-2000:]}")
    return r, cpu, peak - base


def run_nginx(media, players):
    nginx = Nginx(connections=players + 64)
    try:
        pids = [int(x) for x in subprocess.run(["pgrep", "-P", str(nginx.proc.pid)], capture_output=True, text=True).stdout.split()]
        pids = pids or [nginx.proc.pid]
        url = nginx.url("key")
        pub = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", media, "-c", "copy", "-f", "flv", url])
        time.sleep(0.5)
        base = sum(proc_mem(p) for p in pids)
        cpu0 = sum(proc_cpu_fine(p) for p in pids)
        s = Sampler(pids)
        r = load(url, players)
        peak = s.end()
        cpu = sum(proc_cpu_fine(p) for p in pids) - cpu0
        pub.wait(timeout=30)
        return r, cpu, peak - base
    finally:
        nginx.stop()


def frames_in(media):
    """(video, audio) frames in a file, as FFmpeg counts its packets."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
                          "-of", "csv=p=0", media], capture_output=True, text=True, check=True).stdout.split()
    n = dict(line.split(",") for line in out)
    return int(n.get("video", 0)), int(n.get("audio", 0))


def publish_all(urls, media):
    """K FFmpeg publishers of `media` in real time at once, to the end."""
    pubs = [subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", media, "-c", "copy", "-f", "flv", u]) for u in urls]
    for p in pubs:
        if p.wait() != 0:
            sys.exit("bench: an FFmpeg publisher failed")


def ingest_ours(media, k, props, frames):
    """K publishers into K rtmpsrc mode=server in one process
    (examples/rtmp_ingest.rs); its CPU seconds, after checking that every
    publisher's frames all came out."""
    for attempt in range(3):
        # A port picked free may be taken by the time the server binds it
        # (an outgoing connection's): pick again.
        ports = [free_port() for _ in range(k)]
        srv = subprocess.Popen([INGEST, "--props", props, *map(str, ports)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if all(wait_listen(p, srv, quiet=attempt < 2) for p in ports):
            break
        srv.wait()
    cpu0 = proc_cpu_fine(srv.pid)
    publish_all([f"rtmp://127.0.0.1:{p}/live/key" for p in ports], media)
    out = srv.stdout.read().decode()
    cpu = wait_cpu(srv) - cpu0
    if srv.returncode != 0:
        sys.exit(f"bench: rtmp_ingest failed: {srv.stderr.read().decode(errors='replace')[-2000:]}")
    for pub in json.loads(out)["publishers"]:
        if (pub["video"], pub["audio"]) != frames:
            sys.exit(f"bench: a publisher's frames were not all delivered ({props or 'defaults'}): {pub}, sent {frames}")
    return cpu


def ingest_nginx(media, k):
    """The same K publishers into nginx-rtmp; its workers' CPU seconds."""
    nginx = Nginx(connections=k + 64)
    try:
        pids = [int(x) for x in subprocess.run(["pgrep", "-P", str(nginx.proc.pid)], capture_output=True, text=True).stdout.split()] or [nginx.proc.pid]
        cpu0 = sum(proc_cpu_fine(p) for p in pids)
        publish_all([nginx.url(f"k{i}") for i in range(k)], media)
        return sum(proc_cpu_fine(p) for p in pids) - cpu0
    finally:
        nginx.stop()


def wait_cpu(proc):
    """Waits for a child to end; its whole CPU time (user+sys)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def main():
    setup_and_build()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "rtmp_load", "--example", "rtmp_ingest"], cwd=ROOT, check=True)
    hard = raise_fd_limit()
    if hard < max(COUNTS) * 2 + 100:
        sys.exit(f"bench: the file descriptor limit ({hard}) is too low for {max(COUNTS)} players")
    media = media_4mbit(SECS, MBIT)
    gop = max_gop_bytes(media)
    env = plugin_env()
    print(f"\nserve {os.path.basename(media)} ({os.path.getsize(media) / 1e6:.1f} MB, largest GOP {gop / 1024:.0f} KiB) to loopback players, {RUNS} runs, medians:")
    for n in (n for n in COUNTS if n > 0):
        res = {"ours": [], "nginx": []}
        for _ in range(RUNS):
            res["ours"].append(run_ours(media, n, env))
            res["nginx"].append(run_nginx(media, n))
        per_mb = {}
        for name, runs in res.items():
            cpu_mb = statistics.median(c / (r["bytes"] / 1e6) * 1000 for r, c, _ in runs)
            mem = statistics.median(m for _, _, m in runs)
            extra = max(0, mem - (gop if name == "ours" else 0)) / n
            lost = max(r["frames_lost"] for r, _, _ in runs)
            lossy = max(r["players_with_loss"] for r, _, _ in runs)
            started = min(r["started"] for r, _, _ in runs)
            mb = statistics.median(r["bytes"] for r, _, _ in runs) / 1e6
            first = statistics.median(r["first_frame_ms_median"] for r, _, _ in runs)
            first99 = statistics.median(r["first_frame_ms_p99"] for r, _, _ in runs)
            per_mb[name] = cpu_mb
            print(f"  {n:5d} players  {name:<6} {cpu_mb:7.3f} ms CPU per MB delivered ({mb:7.0f} MB), "
                  f"frames lost {lost} ({lossy} players), {extra / 1024:6.1f} KiB per player, "
                  f"{started}/{n} started, first frame p50 {first:.0f} ms p99 {first99:.0f} ms")
        print(f"  {n:5d} players  CPU per MB, ours / nginx = {per_mb['ours'] / per_mb['nginx']:.2f}   (target <= 1.00)")

    if not INGEST_SIDE:
        return
    k = PUBLISHERS
    frames = frames_in(media)
    cpu = {name: [] for name in [*INGEST_SETUPS, "nginx"]}
    for _ in range(RUNS):
        for name, props in INGEST_SETUPS.items():
            cpu[name].append(ingest_ours(media, k, props, frames))
        cpu["nginx"].append(ingest_nginx(media, k))
    pub_secs = k * SECS
    per_core = {name: statistics.median(pub_secs / c for c in runs) for name, runs in cpu.items()}
    print(f"\ningest: {k} publishers of the {MBIT} Mbit/s file at once (FFmpeg -re), {RUNS} runs, medians of CPU (user+sys):")
    for name in INGEST_SETUPS:
        print(f"  {name:<38} {k} rtmpsrc mode=server ! fakesinks in one process: {per_core[name]:5.0f} publishers per core, "
              f"every publisher's {frames[0]} video + {frames[1]} audio frames delivered")
    print(f"  {'nginx':<38} {k} streams, no players:                          {per_core['nginx']:5.0f} publishers per core")
    for name in INGEST_SETUPS:
        ratios = sorted(n / o for n, o in zip(cpu["nginx"], cpu[name]))
        print(f"  {name} / nginx publishers per core = {statistics.median(ratios):.2f} (runs: {', '.join(f'{r:.2f}' for r in ratios)})   (target >= 1.00)")


if __name__ == "__main__":
    main()
