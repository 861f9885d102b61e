#!/usr/bin/env python3
"""Bad-network soak: rtmpsink publishes a live 2 Mbit/s H.264 + AAC stream
for N minutes (default 30) to nginx-rtmp on a test host in a network
namespace, behind a link with 1% loss and 50 ms delay in each direction
(scripts/netem.py; see benchlib.NetLab). Needs root for the namespaces.

Every 10 s it samples the publisher's RSS and reads what nginx recorded so
far, to see how far the newest frame's timestamp trails the wall clock.
Passes when
  - RSS after the first minute grows by less than the allowance (4 MiB),
  - the lag of timestamps behind the wall clock does not grow (drift under
    1 s from the first minute to the end),
  - the recording holds every frame, with the timestamps a 30 fps /
    44.1 kHz stream must have (each within 1 ms of its nominal time).

  scripts/soak_netem.py [minutes] [allowance-MiB]
"""
import os, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import NetLab, Nginx, plugin_env, proc_mem, setup_and_build  # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 30
ALLOW_MIB = float(sys.argv[2]) if len(sys.argv) > 2 else 4


class FlvTail:
    """Reads the tags appended to a growing FLV file."""

    def __init__(self, path):
        self.path, self.pos, self.tags = path, 13, []

    def poll(self):
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        i = 0
        while len(data) - i >= 15:
            kind, size = data[i] & 0x1F, int.from_bytes(data[i + 1:i + 4], "big")
            if len(data) - i < 11 + size + 4:
                break
            ts = int.from_bytes(data[i + 4:i + 7], "big") | data[i + 7] << 24
            key = kind == 9 and data[i + 11] >> 4 == 1
            if kind in (8, 9):
                # Sequence headers (AVC/AAC packet type 0) are not frames.
                if data[i + 12] != 0:
                    self.tags.append((kind, ts, key))
            i += 11 + size + 4
        self.pos += i


def main():
    setup_and_build()
    secs = int(MINUTES * 60)
    lab = NetLab("soak")
    try:
        lab.set("delay 50")
        lab.set("loss 1")
        nginx = Nginx(lab=lab, app_conf="record all; record_path RECDIR;")
    except BaseException:
        lab.close()
        raise
    video_n, audio_n = secs * 30, secs * 44100 // 1024
    pipeline = (
        f"videotestsrc is-live=true num-buffers={video_n} pattern=ball "
        "! video/x-raw,width=640,height=360,framerate=30/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=60 ! h264parse ! s.video "
        f"audiotestsrc is-live=true num-buffers={audio_n} wave=ticks ! audio/x-raw,rate=44100,channels=2 "
        "! avenc_aac ! aacparse ! s.audio "
        f"rtmpsink name=s location={nginx.url('soak')}"
    )
    pub = subprocess.Popen(["gst-launch-1.0", "-q", "-e", *pipeline.split()], env=plugin_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    samples = []  # (seconds, RSS bytes, lag seconds)
    tail = None
    try:
        while pub.poll() is None:
            time.sleep(10)
            now = time.monotonic() - t0
            if tail is None and nginx.recordings():
                tail = FlvTail(nginx.recordings()[0])
            lag = None
            if tail:
                tail.poll()
                video = [t for t in tail.tags if t[0] == 9]
                if video:
                    lag = now - video[-1][1] / 1000
            if pub.poll() is None:
                samples.append((now, proc_mem(pub.pid), lag))
                lag_s = f"{lag:6.2f} s" if lag is not None else "   -"
                print(f"  {now:6.0f} s  RSS {samples[-1][1] / 2**20:6.1f} MiB  "
                      f"newest frame trails the clock by {lag_s}", flush=True)
        err = pub.stderr.read().decode(errors="replace")
        if pub.returncode != 0:
            sys.exit(f"soak: the publisher failed: {err[-2000:]}")
        crossed, dropped = lab.frames()
        time.sleep(1)
        tail = FlvTail(nginx.recordings()[0])
        tail.poll()
        recordings = nginx.recordings()
    finally:
        if pub.poll() is None:
            pub.kill()
        nginx.kill()
        lab.close()
    after = [s for s in samples if s[0] >= 60] or samples
    rss = [s[1] for s in after]
    growth = (max(rss) - rss[0]) / 2**20
    lags = [s[2] for s in after if s[2] is not None]
    drift = lags[-1] - lags[0] if lags else float("nan")
    video = [t for t in tail.tags if t[0] == 9]
    audio = [t for t in tail.tags if t[0] == 8]
    v0, a0 = video[0][1], audio[0][1]
    v_err = max(abs((ts - v0) - i * 1000 / 30) for i, (_, ts, _) in enumerate(video))
    a_err = max(abs((ts - a0) - i * 1024 * 1000 / 44100) for i, (_, ts, _) in enumerate(audio))
    print(f"\nsoak: {MINUTES:g} min live push through 1% loss + 50 ms each way "
          f"(the link dropped {dropped} of {crossed} frames)")
    print(f"soak: RSS after the first minute {rss[0] / 2**20:.1f} MiB, largest {max(rss) / 2**20:.1f} MiB "
          f"(growth {growth:.2f} MiB, allowed {ALLOW_MIB:g})")
    print(f"soak: newest frame behind the wall clock: {lags[0]:.2f} s at 1 min, {lags[-1]:.2f} s at the end "
          f"(drift {drift:+.2f} s)")
    print(f"soak: recorded {len(video)}/{video_n} video and {len(audio)}/{audio_n} audio frames in "
          f"{len(recordings)} recording(s); largest distance from the nominal time: video {v_err:.1f} ms, "
          f"audio {a_err:.1f} ms")
    bad = []
    if growth >= ALLOW_MIB:
        bad.append("memory grew")
    if not abs(drift) < 1.0:
        bad.append("timestamps drifted from the wall clock")
    if len(recordings) != 1 or len(video) != video_n or abs(len(audio) - audio_n) > 2:
        bad.append("frames missing (or a reconnection)")
    if v_err > 1 or a_err > 1:
        bad.append("timestamps off their nominal times")
    if bad:
        sys.exit("soak: " + ", ".join(bad))
    print("soak: ok")


main()
