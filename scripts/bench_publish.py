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
import os, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


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
    sh([os.path.join(ROOT, "scripts/setup.sh")], stdout=subprocess.DEVNULL)
    sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    media_dir = os.path.join(ROOT, "target", "bench-media")
    os.makedirs(media_dir, exist_ok=True)
    media = os.path.join(media_dir, "60s-8mbit.mp4")
    if not os.path.exists(media):
        print("bench: making the 60 s 8 Mbit/s test file (once)")
        sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "60",
            "-b:v", "8M", "-maxrate", "8M", "-bufsize", "8M", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", media])

    work = tempfile.mkdtemp(prefix="bench-nginx-")
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    os.makedirs(os.path.join(work, "logs"))
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{ log_format bytes '$command "$name" $bytes_received';
  server {{ listen 127.0.0.1:{port}; out_queue 16384; access_log {work}/access.log bytes;
    application live {{ live on; }} }} }}
""")
    nginx = subprocess.Popen(["nginx", "-p", work, "-c", os.path.join(work, "nginx.conf")])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close(); break
        except OSError:
            time.sleep(0.05)

    env = dict(os.environ, GST_PLUGIN_PATH=os.path.join(ROOT, "target", "release"))
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
                c, w = cpu_of(cmd(f"rtmp://127.0.0.1:{port}/live/{stream}"), env)
                cpu[name].append(c); wall[name].append(w)
                # nginx logs the publish when the publisher has gone.
                for _ in range(100):
                    log = open(os.path.join(work, "access.log")).read() if os.path.exists(os.path.join(work, "access.log")) else ""
                    line = [l for l in log.splitlines() if l.startswith(f'PUBLISH "{stream}"')]
                    if line: break
                    time.sleep(0.05)
                received[name].append(int(line[0].split()[-1]) if line else 0)
    finally:
        nginx.terminate(); nginx.wait()
        shutil.rmtree(work, ignore_errors=True)

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


main()
