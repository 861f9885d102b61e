#!/usr/bin/env python3
"""TLS benchmark: CPU time (user+sys) to push a 600 s, 8 Mbit/s H.264
(B-frames) + AAC file (BENCH_SECS=60 for 60 s: see benchlib.media_8mbit,
whose start-up costs, TLS's set-up among them, weigh in then) as fast as
possible into nginx-rtmp, over rtmp:// and over rtmps:// (nginx's stream
module terminating TLS in front of it, the usual RTMPS ingest set-up), for

  ours         rtmpsink over rtmp://
  ours-tls     rtmpsink over rtmps:// (certificate checked against the CA)
  ffmpeg-tls   FFmpeg 5.1 (GnuTLS) -c copy over rtmps://
  ffmpeg9-tls  FFmpeg 9 (OpenSSL) -c copy over rtmps:// (-ca_file)
  rtmp2-tls    flvmux ! rtmp2sink over rtmps:// (GIO, glib-networking)

in one run, median of several runs each, printed as ratios. Each run is
checked: nginx must log the whole stream as received. The certificate and
its CA are made here with openssl.

  scripts/bench_tls.py [runs]
"""
import os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Nginx, ffmpeg9, media_8mbit, plugin_env, publish_runs,  # noqa: E402
                      report_publishes, setup_and_build, test_certificate)

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main():
    setup_and_build()
    media = media_8mbit()
    certs = tempfile.mkdtemp(prefix="bench-tls-")
    ca, cert, key = test_certificate(certs)
    nginx = Nginx(tls=(cert, key))
    env = plugin_env()
    demux = f"filesrc location={media} ! qtdemux name=d d.video_0 ! queue ! h264parse ! s.video d.audio_0 ! queue ! aacparse ! s.audio"
    ours = lambda url, extra="": ["gst-launch-1.0", "-q", "-e", *f"{demux} rtmpsink name=s sync=false location={url} {extra}".split()]
    contenders = {
        "ours": lambda n: ours(nginx.url(n)),
        "ours-tls": lambda n: ours(nginx.rtmps_url(n), f"tls-ca-file={ca}"),
        "ffmpeg-tls": lambda n: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", media, "-c", "copy", "-f", "flv", nginx.rtmps_url(n)],
        "ffmpeg9-tls": lambda n: [ffmpeg9(), "-hide_banner", "-loglevel", "error", "-i", media, "-c", "copy", "-ca_file", ca, "-f", "flv", nginx.rtmps_url(n)],
        "rtmp2-tls": lambda n: ["gst-launch-1.0", "-q", "-e", *f"{demux.replace('s.video', 'm.video').replace('s.audio', 'm.audio')} flvmux name=m ! rtmp2sink sync=false tls-validation-flags=0 location={nginx.rtmps_url(n).replace('localhost', '127.0.0.1')}".split()],
    }
    try:
        med, wall, received = publish_runs(contenders, nginx, env, RUNS)
    finally:
        nginx.stop()
    report_publishes(f"nginx-rtmp (TLS by nginx's stream module), {RUNS} runs each", media, med, wall, received)
    print(f"\n  ours-tls / ours         = {med['ours-tls'] / med['ours']:.2f}   (target <= 1.50)")
    print(f"  ours-tls / ffmpeg-tls   = {med['ours-tls'] / med['ffmpeg-tls']:.2f}   (target < 1.00)")
    print(f"  ours-tls / ffmpeg9-tls  = {med['ours-tls'] / med['ffmpeg9-tls']:.2f}")
    print(f"  ours-tls / rtmp2-tls    = {med['ours-tls'] / med['rtmp2-tls']:.2f}")


if __name__ == "__main__":
    main()
