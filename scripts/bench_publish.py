#!/usr/bin/env python3
"""Publish benchmark: CPU time (user+sys) to push a 600 s, 8 Mbit/s H.264
(B-frames) + AAC file (BENCH_SECS=60 for 60 s: see benchlib.media_8mbit,
whose start-up costs weigh in then) into nginx-rtmp as fast as possible, for

  ours        qtdemux ! queue ! h264parse/aacparse ! rtmpsink
  ours-bare   qtdemux ! queue ! rtmpsink   (qtdemux gives what rtmpsink takes: no parser needed)
  ours-noq    qtdemux ! h264parse/aacparse ! rtmpsink, no queues: qtdemux
              (reading by time) feeds both pads from one thread, and
              rtmpsink's muxer, having no thread of its own, needs none
              (flvmux does: without them, it and qtdemux wait on each other)
  rtmp2       qtdemux ! h264parse/aacparse ! flvmux ! rtmp2sink   (defaults)
  ffmpeg      ffmpeg -i file -c copy -f flv rtmp://...

in one run, median of several runs each, printed as ratios. Each run is
checked: nginx must log the whole stream as received. Also measured: the
floor every GStreamer publisher of this file pays before any RTMP, the same
qtdemux (and parsers) into fakesinks.

  scripts/bench_publish.py [runs]
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import statistics  # noqa: E402
from benchlib import Nginx, cpu_of, media_8mbit, plugin_env, publish_runs, report_publishes, setup_and_build  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main():
    setup_and_build()
    media = media_8mbit()
    nginx = Nginx()
    env = plugin_env()
    demux = f"filesrc location={media} ! qtdemux name=d"
    contenders = {
        "ours": lambda n: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! queue ! h264parse ! s.video d.audio_0 ! queue ! aacparse ! s.audio rtmpsink name=s sync=false location={nginx.url(n)}".split()],
        "ours-noq": lambda n: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! h264parse ! s.video d.audio_0 ! aacparse ! s.audio rtmpsink name=s sync=false location={nginx.url(n)}".split()],
        "ours-bare": lambda n: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! queue ! s.video d.audio_0 ! queue ! s.audio rtmpsink name=s sync=false location={nginx.url(n)}".split()],
        "rtmp2": lambda n: ["gst-launch-1.0", "-q", "-e", *f"{demux} d.video_0 ! queue ! h264parse ! m.video d.audio_0 ! queue ! aacparse ! m.audio flvmux name=m ! rtmp2sink sync=false location={nginx.url(n)}".split()],
        "ffmpeg": lambda n: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", media, "-c", "copy", "-f", "flv", nginx.url(n)],
    }
    try:
        med, wall, received = publish_runs(contenders, nginx, env, RUNS)
    finally:
        nginx.stop()
    report_publishes(f"nginx-rtmp, {RUNS} runs each", media, med, wall, received)
    floors = {
        "floor": f"{demux} d.video_0 ! queue ! h264parse ! fakesink d.audio_0 ! queue ! aacparse ! fakesink",
        "floor-bare": f"{demux} d.video_0 ! queue ! fakesink d.audio_0 ! queue ! fakesink",
        "floor-noq": f"{demux} d.video_0 ! h264parse ! fakesink async=false d.audio_0 ! aacparse ! fakesink async=false",
    }
    for name, desc in floors.items():
        cmd = ["gst-launch-1.0", "-q", *desc.split()]
        floor = statistics.median(cpu_of(cmd, env)[0] for _ in range(RUNS))
        what = {"floor": "qtdemux ! queues ! parsers ! fakesinks", "floor-bare": "qtdemux ! queues ! fakesinks", "floor-noq": "qtdemux ! parsers ! fakesinks, no queues"}[name]
        print(f"  {name:<12} cpu {floor:6.3f} s   ({what}, no RTMP: {floor / med['ffmpeg']:.2f}x FFmpeg's whole publish)")
    print(f"\n  ours / rtmp2       = {med['ours'] / med['rtmp2']:.2f}   (target <= 0.25)")
    print(f"  ours / ffmpeg      = {med['ours'] / med['ffmpeg']:.2f}   (target <= 0.70)")
    print(f"  ours-bare / ffmpeg = {med['ours-bare'] / med['ffmpeg']:.2f}")
    print(f"  ours-noq / ffmpeg  = {med['ours-noq'] / med['ffmpeg']:.2f}   (the same parsers, no queues)")
    print(f"  rtmp2 / ffmpeg     = {med['rtmp2'] / med['ffmpeg']:.2f}")

if __name__ == "__main__":
    main()
