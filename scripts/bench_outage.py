#!/usr/bin/env python3
"""A 10 s server outage in a live 4 Mbit/s push: nginx-rtmp is stopped
10 s into the stream and started again 10 s later, while a publisher goes
on. For each publisher it prints the frames lost (sent, less what is in
nginx's recordings), the time from nginx listening again to frames being
recorded again, and the publisher's memory peak above its level before the
outage. Publishers, in one run:

  - rtmpsink, the defaults (reconnect on, backlog 10 s, backoff 1 s doubling)
  - rtmpsink backlog=20000 (the outage plus the backoff fits)
  - flvmux ! rtmp2sink, the incumbent (no reconnection: the push ends)

  scripts/bench_outage.py [outage-seconds]
"""
import os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, plugin_env, proc_mem, setup_and_build  # noqa: E402

OUTAGE = float(sys.argv[1]) if len(sys.argv) > 1 else 10
BEFORE, AFTER = 10, 20  # seconds of stream before and after the outage
SECS = int(BEFORE + OUTAGE + AFTER)

# Noise costs x264 its full bitrate: a steady 4 Mbit/s, 2 s GOPs.
SOURCES = (
    f"videotestsrc is-live=true pattern=snow num-buffers={SECS * 30} "
    "! video/x-raw,width=640,height=360,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast bitrate=4000 key-int-max=60 ! h264parse ! {V} "
    f"audiotestsrc is-live=true num-buffers={SECS * 44100 // 1024} ! audio/x-raw,rate=44100,channels=2 "
    "! avenc_aac ! aacparse ! {A} "
)


def frames(path):
    """(video, crc) of every frame in a recording."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_packets", "-show_data_hash", "CRC32",
                          "-show_entries", "packet=codec_type,data_hash", "-of", "csv=p=0", path],
                         capture_output=True, text=True).stdout
    return {tuple(l.split(",")[:2]) for l in out.splitlines() if l}


def run(name, sink, v, a):
    nginx = Nginx(app_conf="record all; record_path RECDIR; record_unique on;")
    desc = SOURCES.replace("{V}", v).replace("{A}", a) + sink.replace("URL", nginx.url("out"))
    pub = subprocess.Popen(["gst-launch-1.0", "-q", "-e", *desc.split()], env=plugin_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    rss = []  # (seconds, bytes)

    def sample_until(t):
        while time.monotonic() - t0 < t and pub.poll() is None:
            rss.append((time.monotonic() - t0, proc_mem(pub.pid)))
            time.sleep(0.1)

    sample_until(BEFORE)
    nginx.kill()
    sample_until(BEFORE + OUTAGE)
    recorded_before = len(nginx.recordings())
    nginx.start_again()
    back = time.monotonic()
    resumed = None
    while pub.poll() is None:
        recs = nginx.recordings()
        if resumed is None and len(recs) > recorded_before and os.path.getsize(recs[-1]) > 64 * 1024:
            resumed = time.monotonic() - back
        rss.append((time.monotonic() - t0, proc_mem(pub.pid)))
        time.sleep(0.05)
    ended = "finished" if pub.returncode == 0 else "failed: " + pub.stderr.read().decode(errors="replace").strip().splitlines()[-1][:120]
    time.sleep(0.5)
    got = set()
    for r in nginx.recordings():
        got |= frames(r)
    nginx.kill()
    video = sum(1 for k, _ in got if k == "video")
    audio = sum(1 for k, _ in got if k == "audio")
    base = sorted(b for t, b in rss if BEFORE - 5 <= t < BEFORE)
    base = base[len(base) // 2] if base else 0
    peak = max((b for t, b in rss if t >= BEFORE), default=0)
    return {
        "name": name, "ended": ended,
        "video_lost": SECS * 30 - video, "audio_lost": max(0, SECS * 44100 // 1024 - audio),
        "resumed": resumed, "mem": (peak - base) / 2**20,
    }


def main():
    setup_and_build()
    print(f"bench: {OUTAGE:g} s nginx outage, {BEFORE} s into a live 4 Mbit/s push of {SECS} s "
          f"({SECS * 30} video frames)", flush=True)
    rows = [
        run("rtmpsink (defaults)", "rtmpsink name=s location=URL", "s.video", "s.audio"),
        run("rtmpsink backlog=20000", "rtmpsink name=s backlog=20000 location=URL", "s.video", "s.audio"),
        run("flvmux ! rtmp2sink", "flvmux name=m streamable=true ! rtmp2sink location=URL",
            "m.video", "m.audio"),
    ]
    print(f"\n| publisher | video frames lost | audio frames lost | nginx back -> frames recorded again "
          f"| memory peak above before | how the push ended |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        res = f"{r['resumed']:.2f} s" if r["resumed"] is not None else "never"
        print(f"| {r['name']} | {r['video_lost']} of {SECS * 30} | {r['audio_lost']} | {res} "
              f"| {r['mem']:+.1f} MiB | {r['ended']} |")


main()
