#!/usr/bin/env python3
"""Codec benchmark: does publishing and playing H.265 or AV1 (Enhanced
RTMP) cost our elements more CPU per byte than H.264 (legacy FLV)?

The same 8 Mbit/s test picture and AAC audio, encoded three ways (H.264
as bench_publish.py uses it, H.265 and AV1 made from its 60 s once), each
looped to 600 s as bench_publish.py and bench_play.py stream it (BENCH_SECS
to change that: with 60 s, each process's start-up and the machine's
noise swung the ratios by 0.1 between runs), and for each, in one run,
median of several runs:

  publish  filesrc ! qtdemux ! rtmpsink  into nginx-rtmp, as fast as it goes
           (qtdemux gives caps rtmpsink takes as they are: no parser, so
           what differs between codecs is our code)
  play     rtmpsrc ! fakesinks, while FFmpeg 9 publishes the file into
           nginx-rtmp (`wait_key off`, which Enhanced RTMP video needs)

CPU (user+sys) divided by the bytes nginx counted for the stream, printed
as ratios to H.264. Each run is checked: nginx must have received (sent)
at least 90 % of the file.

With --instructions, the same work counted in CPU instructions instead
(valgrind's callgrind: the same figure on every run, whatever else the
machine does): our process alone, publishing into and playing from our own
server (no nginx), the cost of a 1 s cut of the file taken off so that
start-up does not count, per MB of the rest; and for H.264, the same with
`measure-latency=true` on rtmpsink and rtmpsrc, against without (what
timing every frame costs). About 10 minutes.

  scripts/bench_codecs.py [runs]
  scripts/bench_codecs.py --instructions
"""
import os, re, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Nginx, cpu_of, ffmpeg9, looped, media_60s_8mbit, plugin_env, setup_and_build, ROOT  # noqa: E402

INSTRUCTIONS = "--instructions" in sys.argv[1:]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 and not INSTRUCTIONS else 5


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


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("bench: the server never listened")


def src_server(port, prefix=(), props=()):
    return [*prefix, "gst-launch-1.0", "-q", "rtmpsrc", "mode=server", f"location=rtmp://127.0.0.1:{port}/live/key",
            "eos-on-unpublish=true", *props, "name=s", "s.video", "!", "fakesink", "sync=false",
            "s.audio", "!", "fakesink", "sync=false"]


def callgrind(cmd, env):
    """Runs `cmd` under callgrind; the instructions it executed."""
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    m = re.search(rb"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"bench: {' '.join(cmd)} failed: {p.stderr.decode(errors='replace')[-2000:]}")
    return int(m.group(1))


def publish_instructions(path, env, props=()):
    port = free_port()
    server = subprocess.Popen(src_server(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    n = callgrind(["gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "qtdemux", "name=d",
                   "d.video_0", "!", "queue", "!", "s.video", "d.audio_0", "!", "queue", "!", "s.audio",
                   "rtmpsink", "name=s", "sync=false", *props, f"location=rtmp://127.0.0.1:{port}/live/key"], env)
    server.wait(timeout=60)
    return n


def play_instructions(path, env, props=()):
    port = free_port()
    out = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            *src_server(port, props=props)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port)
    subprocess.run([ffmpeg9(), "-hide_banner", "-loglevel", "error", "-i", path, "-c", "copy", "-f", "flv",
                    f"rtmp://127.0.0.1:{port}/live/key"], check=True)
    err = out.communicate(timeout=600)[1]
    m = re.search(rb"Collected : (\d+)", err)
    if out.returncode != 0 or not m:
        sys.exit(f"bench: rtmpsrc under callgrind failed: {err.decode(errors='replace')[-2000:]}")
    return int(m.group(1))


def cut(path):
    """The first second of `path` (made once): start-up costs alone."""
    short = path.replace(".mp4", "-1s.mp4")
    if not os.path.exists(short):
        subprocess.run([ffmpeg9(), "-hide_banner", "-loglevel", "error", "-y", "-i", path, "-t", "1",
                        "-c", "copy", short], check=True)
    return short


def instructions(media, env):
    print("\ninstructions (callgrind), our process alone, per MB beyond the first second:")
    for what, run in [("publish (qtdemux ! rtmpsink)", publish_instructions),
                      ("play (rtmpsrc ! fakesink)", play_instructions)]:
        per_mb = {}
        for codec, path in media.items():
            per_mb[codec] = per_mb_of(run, path, env)
        print(f"  {what}")
        for k, v in per_mb.items():
            print(f"    {k:<6} {v / 1e6:7.3f} M instructions/MB   {v / per_mb['H.264']:.2f}x H.264")
        # What timing every frame costs (rtmpsink's and rtmpsrc's
        # measure-latency: a pad probe and a clock read per frame).
        probed = per_mb_of(run, media["H.264"], env, ("measure-latency=true",))
        print(f"    H.264 with measure-latency=true {probed / 1e6:7.3f} M instructions/MB   "
              f"{probed / per_mb['H.264']:.3f}x without")


def per_mb_of(run, path, env, props=()):
    """Instructions per MB of `path` beyond its first second."""
    short = cut(path)
    n = run(path, env, props) - run(short, env, props)
    return n / ((os.path.getsize(path) - os.path.getsize(short)) / 1e6)


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
    if INSTRUCTIONS:
        if subprocess.run(["sh", "-c", "command -v valgrind"], stdout=subprocess.DEVNULL).returncode != 0:
            sys.exit("bench: --instructions needs valgrind (apt-get install -y valgrind)")
        instructions(media, plugin_env())
        return
    media = {k: looped(v) for k, v in media.items()}
    secs = int(os.environ.get("BENCH_SECS", "600"))
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

    print(f"\n{secs} s, 8 Mbit/s, through nginx-rtmp, {RUNS} runs each, median CPU (user+sys) per MB:")
    print("  (each ratio is the median of the runs' own ratios, each run's codecs streamed back to back;")
    print("   the range shows how far single runs strayed)")
    for what, per in [("publish (qtdemux ! rtmpsink)", publish), ("play (rtmpsrc ! fakesink)", play)]:
        print(f"  {what}")
        for k, v in per.items():
            ratios = [a / b for a, b in zip(v, per["H.264"])]
            spread = f"   (runs {min(ratios):.2f}-{max(ratios):.2f}x)" if k != "H.264" else ""
            print(f"    {k:<6} {statistics.median(v) * 1e9:7.3f} ms/MB   "
                  f"{statistics.median(ratios):.2f}x H.264{spread}")
    print("\n  target: H.265 and AV1 <= 1.00x H.264 in each")


if __name__ == "__main__":
    main()
