#!/usr/bin/env python3
"""Publish benchmark: CPU time (user+sys) to push a 60 s, 8 Mbit/s H.264
(B-frames) + AAC file into nginx-rtmp as fast as possible, for

  ours   qtdemux ! h264parse/aacparse ! rtmpsink
  rtmp2  qtdemux ! h264parse/aacparse ! flvmux ! rtmp2sink   (defaults)
  ffmpeg ffmpeg -i file -c copy -f flv rtmp://...

in one run, median of several runs each, printed as ratios. Each run is
checked: nginx must log the whole stream as received.

  scripts/bench_publish.py [runs]
"""
import os, resource, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, media_60s_8mbit, plugin_env, setup_and_build  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def cpu_of(cmd, env=None):
    """CPU seconds (user+sys) the command and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr.decode(errors='replace')[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main():
    setup_and_build()
    media = media_60s_8mbit()
    nginx = Nginx()
    env = plugin_env()
    demux = f"filesrc location={media} ! qtdemux name=d"
    contenders = {
        "ours": lambda url: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! queue ! h264parse ! s.video d.audio_0 ! queue ! aacparse ! s.audio rtmpsink name=s sync=false location={url}".split()],
        "rtmp2": lambda url: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! queue ! h264parse ! m.video d.audio_0 ! queue ! aacparse ! m.audio flvmux name=m ! rtmp2sink sync=false location={url}".split()],
        "ffmpeg": lambda url: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", media, "-c", "copy", "-f", "flv", url],
    }
    cpu = {k: [] for k in contenders}
    wall = {k: [] for k in contenders}
    received = {k: [] for k in contenders}
    try:
        for i in range(RUNS):
            for name, cmd in contenders.items():
                stream = f"{name}{i}"
                c, w = cpu_of(cmd(nginx.url(stream)), env)
                cpu[name].append(c); wall[name].append(w)
                # nginx logs the publish when the publisher has gone.
                line = nginx.wait_line(f'PUBLISH "{stream}"')
                received[name].append(int(line.split()[-2]) if line else 0)
    finally:
        nginx.stop()

    size = os.path.getsize(media)
    print(f"\npublish {os.path.basename(media)} ({size / 1e6:.1f} MB) into nginx-rtmp, {RUNS} runs each, median CPU (user+sys):")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    for k in contenders:
        got = min(received[k])
        print(f"  {k:<7} cpu {med[k]:6.3f} s   wall {statistics.median(wall[k]):6.2f} s   nginx received >= {got / 1e6:6.1f} MB per run")
        if got < size * 0.9:
            sys.exit(f"bench: {k} did not deliver the stream (nginx got {got} bytes of a {size}-byte file)")
    print(f"\n  ours / rtmp2   = {med['ours'] / med['rtmp2']:.2f}   (target <= 0.30)")
    print(f"  ours / ffmpeg  = {med['ours'] / med['ffmpeg']:.2f}   (target <= 1.00)")
    print(f"  rtmp2 / ffmpeg = {med['rtmp2'] / med['ffmpeg']:.2f}")


if __name__ == "__main__":
    main()
