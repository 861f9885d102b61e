#!/usr/bin/env python3
"""Live soak: rtmpsink publishes a live test pattern with audio to a local
nginx-rtmp for N minutes (default 10) while this samples the publisher's
RSS every 10 s. Passes when RSS after the first minute grows by less than
the allowance (default 4 MiB): memory is bounded in a long push. With
--play, an rtmpsrc player (with the parsers a user puts behind it) reads
the stream from nginx all along, and its RSS is what is sampled.

  scripts/soak_publish.py [minutes] [allowance-MiB]
  scripts/soak_publish.py --play [minutes] [allowance-MiB]
"""
import os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAY = "--play" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--play"]
MINUTES = float(ARGS[0]) if len(ARGS) > 0 else 10
ALLOW_MIB = float(ARGS[1]) if len(ARGS) > 1 else 4


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    subprocess.run([os.path.join(ROOT, "scripts/setup.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="soak-nginx-")
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    os.makedirs(os.path.join(work, "logs"))
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn;
events {{ worker_connections 64; }}
rtmp {{ log_format bytes '$command "$name" $bytes_received $bytes_sent';
  server {{ listen 127.0.0.1:{port}; access_log {work}/access.log bytes; application live {{ live on; }} }} }}
""")
    nginx = subprocess.Popen(["nginx", "-p", work, "-c", os.path.join(work, "nginx.conf")])
    time.sleep(0.5)
    env = dict(os.environ, GST_PLUGIN_PATH=os.path.join(ROOT, "target", "release"))
    pipeline = (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=60 ! h264parse ! s.video "
        "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! s.audio "
        f"rtmpsink name=s location=rtmp://127.0.0.1:{port}/live/soak"
    )
    pub = subprocess.Popen(["gst-launch-1.0", "-q", "-e", *pipeline.split()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    measured, player = pub, None
    if PLAY:
        play = (f"rtmpsrc location=rtmp://127.0.0.1:{port}/live/soak name=p "
                "p.video ! h264parse ! fakesink sync=false p.audio ! aacparse ! fakesink sync=false")
        player = subprocess.Popen(["gst-launch-1.0", "-q", *play.split()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        measured = player
    what = "player" if PLAY else "publisher"
    samples = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < MINUTES * 60:
            time.sleep(10)
            for proc, name in [(pub, "publisher"), (player, "player")]:
                if proc and proc.poll() is not None:
                    sys.exit(f"soak: the {name} stopped early: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            samples.append((time.monotonic() - t0, rss_kib(measured.pid)))
            print(f"  {samples[-1][0]:6.0f} s  RSS {samples[-1][1] / 1024:7.1f} MiB", flush=True)
    finally:
        pub.send_signal(2)  # SIGINT: gst-launch -e sends EOS and finishes
        try:
            pub.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pub.kill()
        if player:
            try:
                player.wait(timeout=20)  # nginx ends its stream at the unpublish
            except subprocess.TimeoutExpired:
                player.kill()
        nginx.terminate(); nginx.wait()
        log = open(os.path.join(work, "access.log")).read() if os.path.exists(os.path.join(work, "access.log")) else ""
        shutil.rmtree(work, ignore_errors=True)
    after = [r for t, r in samples if t >= 60] or [r for _, r in samples]
    growth = (max(after) - after[0]) / 1024
    got = [l for l in log.splitlines() if l.startswith('PLAY "soak"' if PLAY else 'PUBLISH "soak"')]
    print(f"\nsoak: {MINUTES:g} min live push, the {what}'s RSS after the first minute {after[0] / 1024:.1f} MiB, "
          f"largest {max(after) / 1024:.1f} MiB (growth {growth:.2f} MiB, allowed {ALLOW_MIB:g})")
    print(f"soak: nginx logged: {got[0] if got else 'nothing'}")
    if growth >= ALLOW_MIB:
        sys.exit("soak: memory grew")
    print("soak: ok")


main()
