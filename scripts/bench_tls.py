#!/usr/bin/env python3
"""TLS benchmark: CPU time (user+sys) to push a 60 s, 8 Mbit/s H.264
(B-frames) + AAC file as fast as possible into nginx-rtmp, over rtmp:// and
over rtmps:// (nginx's stream module terminating TLS in front of it, the
usual RTMPS ingest set-up), for

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
import os, statistics, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, ffmpeg9, media_60s_8mbit, plugin_env, setup_and_build, test_certificate  # noqa: E402
from bench_publish import cpu_of  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main():
    setup_and_build()
    media = media_60s_8mbit()
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
    cpu = {k: [] for k in contenders}
    wall = {k: [] for k in contenders}
    received = {k: [] for k in contenders}
    try:
        for i in range(RUNS):
            for name, cmd in contenders.items():
                stream = f"{name}{i}"
                c, w = cpu_of(cmd(stream), env)
                cpu[name].append(c); wall[name].append(w)
                line = nginx.wait_line(f'PUBLISH "{stream}"')
                received[name].append(int(line.split()[-2]) if line else 0)
    finally:
        nginx.stop()

    size = os.path.getsize(media)
    print(f"\npublish {os.path.basename(media)} ({size / 1e6:.1f} MB) into nginx-rtmp (TLS by nginx's stream module), {RUNS} runs each, median CPU (user+sys):")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    for k in contenders:
        got = min(received[k])
        print(f"  {k:<12} cpu {med[k]:6.3f} s   wall {statistics.median(wall[k]):6.2f} s   nginx received >= {got / 1e6:6.1f} MB per run")
        if got < size * 0.9:
            sys.exit(f"bench: {k} did not deliver the stream (nginx got {got} bytes of a {size}-byte file)")
    print(f"\n  ours-tls / ours         = {med['ours-tls'] / med['ours']:.2f}   (target <= 1.50)")
    print(f"  ours-tls / ffmpeg-tls   = {med['ours-tls'] / med['ffmpeg-tls']:.2f}   (target < 1.00)")
    print(f"  ours-tls / ffmpeg9-tls  = {med['ours-tls'] / med['ffmpeg9-tls']:.2f}")
    print(f"  ours-tls / rtmp2-tls    = {med['ours-tls'] / med['rtmp2-tls']:.2f}")


if __name__ == "__main__":
    main()
