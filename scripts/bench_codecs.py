#!/usr/bin/env python3
"""Codec benchmark: does publishing and playing H.265 or AV1 (Enhanced
RTMP) cost our elements more CPU per byte than H.264 (legacy FLV)?

The same 60 s, 8 Mbit/s test picture and AAC audio, encoded three ways
(H.264 as bench_publish.py uses it, H.265 and AV1 made from it once), and
for each, in one run, median of several runs:

  publish  filesrc ! qtdemux ! rtmpsink  into nginx-rtmp, as fast as it goes
           (qtdemux gives caps rtmpsink takes as they are: no parser, so
           what differs between codecs is our code)
  play     rtmpsrc ! fakesinks, while FFmpeg 9 publishes the file into
           nginx-rtmp (`wait_key off`, which Enhanced RTMP video needs)

CPU (user+sys) divided by the bytes nginx counted for the stream, printed
as ratios to H.264. Each run is checked: nginx must have received (sent)
at least 90 % of the file.

  scripts/bench_codecs.py [runs]
"""
import os, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, cpu_of, ffmpeg9, media_60s_8mbit, plugin_env, setup_and_build, ROOT  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def transcoded(h264, name, args):
    """The H.264 file with its video encoded again by FFmpeg 9 (made once)."""
    path = os.path.join(ROOT, "target", "bench-media", name)
    if not os.path.exists(path):
        print(f"bench: making {name} (once)", flush=True)
        r = subprocess.run([ffmpeg9(), "-hide_banner", "-loglevel", "error", "-y", "-i", h264,
                            *args, "-b:v", "8M", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "copy",
                            path + ".tmp.mp4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            sys.exit(f"bench: could not make {name}: {r.stderr.decode(errors='replace')[-2000:]}")
        os.rename(path + ".tmp.mp4", path)
    return path


def main():
    setup_and_build()
    h264 = media_60s_8mbit()
    media = {
        "H.264": h264,
        "H.265": transcoded(h264, "60s-8mbit-hevc.mp4",
                            ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                             "-maxrate", "8M", "-bufsize", "8M", "-x265-params", "log-level=error"]),
        "AV1": transcoded(h264, "60s-8mbit-av1.mp4", ["-c:v", "libsvtav1", "-preset", "12"]),
    }
    nginx = Nginx(log_level="info", app_conf="wait_key off;")
    env = plugin_env()
    publish = {k: [] for k in media}
    play = {k: [] for k in media}
    try:
        for i in range(RUNS):
            for codec, path in media.items():
                size = os.path.getsize(path)
                stream = f"pub{i}{codec.replace('.', '')}"
                cmd = ["gst-launch-1.0", "-q", "-e", "filesrc", f"location={path}", "!", "qtdemux", "name=d",
                       "d.video_0", "!", "queue", "!", "s.video", "d.audio_0", "!", "queue", "!", "s.audio",
                       "rtmpsink", "name=s", "sync=false", f"location={nginx.url(stream)}"]
                cpu, _ = cpu_of(cmd, env)
                line = nginx.wait_line(f'PUBLISH "{stream}"')
                got = int(line.split()[-2]) if line else 0
                if got < size * 0.9:
                    sys.exit(f"bench: {codec}: nginx received {got} bytes of a {size}-byte file")
                publish[codec].append(cpu / got)

                stream = f"play{i}{codec.replace('.', '')}"
                url = nginx.url(stream)
                p = subprocess.Popen(["gst-launch-1.0", "-q", "rtmpsrc", f"location={url}", "name=s",
                                      "s.video", "!", "fakesink", "sync=false",
                                      "s.audio", "!", "fakesink", "sync=false"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if not nginx.wait_player(stream):
                    p.kill()
                    sys.exit(f"bench: rtmpsrc never started playing {codec}")
                subprocess.run([ffmpeg9(), "-hide_banner", "-loglevel", "error", "-i", path,
                                "-c", "copy", "-f", "flv", url], check=True)
                _, status, usage = os.wait4(p.pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f"bench: rtmpsrc failed on {codec}: {p.stderr.read().decode(errors='replace')[-2000:]}")
                line = nginx.wait_line(f'PLAY "{stream}"')
                sent = int(line.split()[-1]) if line else 0
                if sent < size * 0.9:
                    sys.exit(f"bench: {codec}: nginx sent {sent} bytes of a {size}-byte file")
                play[codec].append((usage.ru_utime + usage.ru_stime) / sent)
    finally:
        nginx.stop()

    print(f"\n60 s, 8 Mbit/s, through nginx-rtmp, {RUNS} runs each, median CPU (user+sys) per MB:")
    for what, per in [("publish (qtdemux ! rtmpsink)", publish), ("play (rtmpsrc ! fakesink)", play)]:
        med = {k: statistics.median(v) * 1e6 for k, v in per.items()}
        print(f"  {what}")
        for k, v in med.items():
            print(f"    {k:<6} {v * 1000:7.3f} ms/MB   {v / med['H.264']:.2f}x H.264")
    print("\n  target: H.265 and AV1 <= 1.00x H.264 in each")


if __name__ == "__main__":
    main()
