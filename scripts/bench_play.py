#!/usr/bin/env python3
"""Play benchmark: FFmpeg publishes a 600 s, 8 Mbit/s H.264 (B-frames) + AAC
file (BENCH_SECS=60 for 60 s: see benchlib.media_8mbit, whose start-up
costs weigh in then) into nginx-rtmp as fast as it can while one player reads it; the
player's CPU time (user+sys) is measured, for

  ours     rtmpsrc ! h264parse/aacparse ! fakesinks
  ours-noq the same with pad-queues=false (the streaming thread that reads
           the socket pushes on both pads: sinks with async=false, as the
           property's blurb says, since a prerolling sink would hold that
           thread before the other pad got anything)
  rtmp2    rtmp2src ! flvdemux ! queues ! h264parse/aacparse ! fakesinks
  ffmpeg   ffmpeg -i rtmp://... -c copy -f null -

in one run, median of several runs each, printed as ratios. Each run is
checked: nginx must log the whole stream as sent to the player. A run
where it did not (nginx-rtmp drops what a player that falls behind cannot
take; rtmp2src ! flvdemux falls behind FFmpeg's publish on a busy
machine) is said and taken again, up to three times. Only whole runs
count: if anything, that leaves rtmp2's slower runs out, against us.

  scripts/bench_play.py [runs]
"""
import os, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, media_8mbit, plugin_env, setup_and_build  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ATTEMPTS = 4


def play_once(nginx, env, name, cmd, stream, media):
    """One play of the stream while FFmpeg publishes it: the player's CPU
    seconds and the bytes nginx logged as sent to it."""
    url = nginx.url(stream)
    p = subprocess.Popen(cmd(url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not nginx.wait_player(stream):
        p.kill()
        sys.exit(f"bench: {name} never started playing: {p.stderr.read().decode(errors='replace')[-1000:]}")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", media, "-c", "copy", "-f", "flv", url], check=True)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0 and name != "ffmpeg":
        sys.exit(f"bench: {name} failed: {p.stderr.read().decode(errors='replace')[-2000:]}")
    line = nginx.wait_line(f'PLAY "{stream}"')
    return usage.ru_utime + usage.ru_stime, int(line.split()[-1]) if line else 0


def main():
    setup_and_build()
    media = media_8mbit()
    nginx = Nginx(log_level="info")
    env = plugin_env()
    players = {
        "ours": lambda url: ["gst-launch-1.0", "-q", *f"rtmpsrc location={url} name=s s.video ! h264parse ! fakesink sync=false s.audio ! aacparse ! fakesink sync=false".split()],
        "ours-noq": lambda url: ["gst-launch-1.0", "-q", *f"rtmpsrc location={url} pad-queues=false name=s s.video ! h264parse ! fakesink sync=false async=false s.audio ! aacparse ! fakesink sync=false async=false".split()],
        "rtmp2": lambda url: ["gst-launch-1.0", "-q", *f"rtmp2src location={url} ! flvdemux name=d d.video ! queue ! h264parse ! fakesink sync=false d.audio ! queue ! aacparse ! fakesink sync=false".split()],
        # FFmpeg does not end on nginx's StreamEOF: a read timeout ends it.
        "ffmpeg": lambda url: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-rw_timeout", "2000000", "-i", url, "-c", "copy", "-f", "null", "-"],
    }
    cpu = {k: [] for k in players}
    sent = {k: [] for k in players}
    size = os.path.getsize(media)
    try:
        for i in range(RUNS):
            for name, cmd in players.items():
                # nginx-rtmp drops what a player that falls behind cannot
                # take: such a run measured less than the whole stream. It
                # is said and taken again, up to three times; four short
                # runs in a row are a failure.
                for attempt in range(ATTEMPTS):
                    stream = f"{name}{i}-{attempt}"
                    took, got = play_once(nginx, env, name, cmd, stream, media)
                    if got >= size * 0.9:
                        break
                    print(f"bench: {name}, run {i + 1}: nginx sent {got} of the {size} bytes; "
                          f"{'taking the run again' if attempt + 1 < ATTEMPTS else 'giving up'}", flush=True)
                cpu[name].append(took)
                sent[name].append(got)
    finally:
        nginx.stop()

    print(f"\nplay {os.path.basename(media)} ({size / 1e6:.1f} MB) from nginx-rtmp while FFmpeg publishes it, {RUNS} runs each, median player CPU (user+sys):")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    for k in players:
        got = min(sent[k])
        print(f"  {k:<9} cpu {med[k]:6.3f} s   nginx sent it >= {got / 1e6:6.1f} MB per run")
        if got < size * 0.9:
            sys.exit(f"bench: {k} did not get the stream (nginx sent {got} bytes of a {size}-byte file)")
    print(f"\n  ours / rtmp2       = {med['ours'] / med['rtmp2']:.2f}   (target <= 0.60)")
    print(f"  ours / ffmpeg      = {med['ours'] / med['ffmpeg']:.2f}   (target <= 0.70)")
    print(f"  ours-noq / rtmp2   = {med['ours-noq'] / med['rtmp2']:.2f}")
    print(f"  ours-noq / ffmpeg  = {med['ours-noq'] / med['ffmpeg']:.2f}")
    print(f"  rtmp2 / ffmpeg     = {med['rtmp2'] / med['ffmpeg']:.2f}")


main()
