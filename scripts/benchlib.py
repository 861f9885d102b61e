"""What the benchmark and soak scripts share: set-up, the test file, and a
private nginx-rtmp on a free loopback port."""
import os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_and_build():
    subprocess.run([os.path.join(ROOT, "scripts/setup.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def plugin_env():
    return dict(os.environ, GST_PLUGIN_PATH=os.path.join(ROOT, "target", "release"))


def media_4mbit(secs=20, mbit=4):
    """A `mbit` Mbit/s (4 unless told) H.264 (2 s GOPs, no B-frames, as
    live encoders send) + AAC FLV of `secs` seconds, made once and kept."""
    d = os.path.join(ROOT, "target", "bench-media")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{secs}s-{mbit}mbit.flv")
    if not os.path.exists(path):
        print(f"bench: making the {secs} s {mbit} Mbit/s test file (once)", flush=True)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", str(secs), "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "60",
                        "-b:v", f"{mbit}M", "-maxrate", f"{mbit}M", "-bufsize", f"{mbit}M", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-b:a", "128k", "-f", "flv", path], check=True)
    return path


def cpu_of(cmd, env=None):
    """CPU seconds (user+sys) the command and its children used, and the
    wall time it took; exits with its stderr if it failed."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    except subprocess.TimeoutExpired:
        sys.exit(f"bench: still running after 10 minutes, stopped: {' '.join(cmd)}")
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr.decode(errors='replace')[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def publish_runs(contenders, nginx, env, runs):
    """Runs each contender (name -> stream -> command) `runs` times, in
    turn, each publishing a stream of its own into `nginx`; returns the
    median CPU per contender, after checking nginx received the whole file
    each time (`media`'s size, at least 90 %)."""
    import statistics
    cpu = {k: [] for k in contenders}
    wall = {k: [] for k in contenders}
    received = {k: [] for k in contenders}
    for i in range(runs):
        for name, cmd in contenders.items():
            stream = f"{name}{i}"
            c, w = cpu_of(cmd(stream), env)
            cpu[name].append(c); wall[name].append(w)
            # nginx logs the publish when the publisher has gone.
            line = nginx.wait_line(f'PUBLISH "{stream}"')
            received[name].append(int(line.split()[-2]) if line else 0)
    return ({k: statistics.median(v) for k, v in cpu.items()},
            {k: statistics.median(v) for k, v in wall.items()},
            {k: min(v) for k, v in received.items()})


def report_publishes(title, media, cpu, wall, received):
    """Prints the medians and fails when a contender lost the stream."""
    size = os.path.getsize(media)
    print(f"\npublish {os.path.basename(media)} ({size / 1e6:.1f} MB) into {title}, median CPU (user+sys):")
    for k in cpu:
        print(f"  {k:<12} cpu {cpu[k]:6.3f} s   wall {wall[k]:6.2f} s   nginx received >= {received[k] / 1e6:6.1f} MB per run")
        if received[k] < size * 0.9:
            sys.exit(f"bench: {k} did not deliver the stream (nginx got {received[k]} bytes of a {size}-byte file)")


def proc_cpu(pid):
    """User + system CPU seconds a running process has used."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick


def proc_cpu_fine(pid):
    """proc_cpu to the microsecond: the scheduler's run time of each thread
    alive now (/proc/PID/task/*/sched), where the kernel keeps it, rather
    than clock ticks (10 ms, a tenth of what 8 publishers cost in 20 s);
    proc_cpu where it does not. A thread that has ended is not counted:
    take it where none has (a single-threaded process, or the start of a
    measure that wait4 ends)."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                ms = next((line.split(":")[1] for line in f if line.startswith("se.sum_exec_runtime")), None)
            if ms is None:
                return proc_cpu(pid)
            total += float(ms) / 1000
    except FileNotFoundError:
        return proc_cpu(pid)
    return total


def proc_mem(pid, field="VmRSS"):
    """A memory figure of a running process, in bytes (VmRSS, VmHWM)."""
    for l in open(f"/proc/{pid}/status"):
        if l.startswith(field + ":"):
            return int(l.split()[1]) * 1024
    return 0


def raise_fd_limit():
    """As many file descriptors as allowed, for this process and its children."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def media_8mbit():
    """The 8 Mbit/s file the play and publish benchmarks stream: the 60 s
    one (media_60s_8mbit) looped to 600 s, or to BENCH_SECS seconds (a
    multiple of 60), made once and kept. Streamed as fast as it goes, 60 s
    take a tenth of a second of CPU, of which each process's start-up is a
    good part (GStreamer's some 15 ms, FFmpeg's some 70: it probes its
    input), which flattered every GStreamer contender against FFmpeg; 600 s
    show what a stream costs once running."""
    return looped(media_60s_8mbit())


def looped(one):
    """`one`, a 60 s file, played over and over to 600 s, or to BENCH_SECS
    seconds (a multiple of 60), without encoding again; made once and kept
    beside it (its name's "60s" becomes the length)."""
    secs = int(os.environ.get("BENCH_SECS", "600"))
    if secs == 60:
        return one
    if secs % 60 or secs <= 0:
        sys.exit(f"bench: BENCH_SECS={secs}: a multiple of 60 seconds")
    name = os.path.basename(one)
    if not name.startswith("60s-"):
        sys.exit(f"bench: {name}: looped() takes a 60 s file named 60s-...")
    path = os.path.join(os.path.dirname(one), f"{secs}s-" + name[len("60s-"):])
    if not os.path.exists(path):
        print(f"bench: making {os.path.basename(path)} (once), {name} looped", flush=True)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-stream_loop", str(secs // 60 - 1), "-i", one, "-c", "copy", path + ".tmp.mp4"],
                       check=True)
        os.rename(path + ".tmp.mp4", path)
    return path


def media_60s_8mbit():
    """A 60 s, 8 Mbit/s H.264 (B-frames) + AAC MP4, made once and kept."""
    d = os.path.join(ROOT, "target", "bench-media")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "60s-8mbit.mp4")
    if not os.path.exists(path):
        print("bench: making the 60 s 8 Mbit/s test file (once)", flush=True)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "60",
                        "-b:v", "8M", "-maxrate", "8M", "-bufsize", "8M", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-b:a", "128k", path], check=True)
    return path


def test_certificate(folder):
    """A CA and a localhost certificate it signed (openssl, made here):
    returns (ca.pem, cert.pem, key.pem)."""
    ca_key, ca, key, csr, cert = (os.path.join(folder, n) for n in
                                  ("ca.key", "ca.pem", "localhost.key", "localhost.csr", "localhost.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
        "-subj", "/CN=bench CA", "-keyout", ca_key, "-out", ca)
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    ext = os.path.join(folder, "ext.cnf")
    open(ext, "w").write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "30",
        "-extfile", ext, "-out", cert)
    return ca, cert, key


def ffmpeg9():
    """FFmpeg 9 from PyPI (imageio-ffmpeg, installed by setup.sh)."""
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


class NetLab:
    """This side, a middle network namespace running scripts/netem.py (the
    impairment: delay, loss, blackout, in both directions) and a server
    namespace, joined by veth pairs. As tests/common/netlab.rs, for the
    scripts."""

    def __init__(self, tag="lab"):
        tag = f"{tag}{os.getpid() % 100000}"
        self.mid, self.srv, self.host_if = f"{tag}m", f"{tag}s", f"{tag}h"
        net = f"10.{150 + os.getpid() % 50}.{os.getpid() % 250}"
        self.host_addr, self.srv_addr = f"{net}.1", f"{net}.2"
        a, b, s = f"{tag}a", f"{tag}b", f"{tag}v"
        for ns in (self.mid, self.srv):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        ip = lambda *args: subprocess.run(["ip", *args], check=True)
        ip("netns", "add", self.mid)
        ip("netns", "add", self.srv)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", a, "netns", self.mid)
        ip("link", "add", s, "netns", self.srv, "type", "veth", "peer", "name", b, "netns", self.mid)
        ip("addr", "add", f"{self.host_addr}/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.srv, "addr", "add", f"{self.srv_addr}/24", "dev", s)
        for ns, dev in ((self.srv, s), (self.srv, "lo"), (self.mid, a), (self.mid, b)):
            ip("-n", ns, "link", "set", dev, "up")
        off = ["tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"]
        subprocess.run(["ethtool", "-K", self.host_if, *off], check=True, stdout=subprocess.DEVNULL)
        for ns, dev in ((self.srv, s), (self.mid, a), (self.mid, b)):
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, *off], check=True,
                           stdout=subprocess.DEVNULL)
        self.bridge = subprocess.Popen(
            ["ip", "netns", "exec", self.mid, "python3", os.path.join(ROOT, "scripts/netem.py"), a, b],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.bridge.stdout.readline().strip() == "ready"

    def set(self, line):
        """A netem.py command: 'delay 50', 'loss 1', 'blackout on'."""
        self.bridge.stdin.write(line + "\n")
        self.bridge.stdin.flush()

    def frames(self):
        self.set("stats")
        w = self.bridge.stdout.readline().split()
        return int(w[1]), int(w[3])

    def close(self):
        self.bridge.kill(); self.bridge.wait()
        for ns in (self.mid, self.srv):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", self.host_if], stderr=subprocess.DEVNULL)


class Nginx:
    """nginx-rtmp as a plain process in a scratch folder; logs every
    publish and play with its byte counts. With a NetLab it runs on the
    lab's server side; `app_conf` goes into the application block
    (RECDIR: a folder for recordings)."""

    def __init__(self, log_level="warn", connections=256, lab=None, app_conf="", tls=None):
        self.work = tempfile.mkdtemp(prefix="bench-nginx-")
        os.chmod(self.work, 0o755)
        self.rec = os.path.join(self.work, "rec")
        os.makedirs(self.rec)
        os.chmod(self.rec, 0o777)  # the worker runs as nobody
        if lab:
            self.host, self.port, self.prefix = lab.srv_addr, 1935, ["ip", "netns", "exec", lab.srv]
        else:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); self.port = s.getsockname()[1]; s.close()
            self.host, self.prefix = "127.0.0.1", []
        app_conf = app_conf.replace("RECDIR", self.rec)
        os.makedirs(os.path.join(self.work, "logs"))
        # tls=(cert, key): nginx's stream module terminates TLS in front of
        # the RTMP port (the usual RTMPS ingest set-up), on self.tls_port.
        stream_module = stream = ""
        if tls:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); self.tls_port = s.getsockname()[1]; s.close()
            stream_module = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
            stream = (f"stream {{ server {{ listen {self.host}:{self.tls_port} ssl; ssl_certificate {tls[0]}; "
                      f"ssl_certificate_key {tls[1]}; proxy_pass {self.host}:{self.port}; }} }}\n")
        with open(os.path.join(self.work, "nginx.conf"), "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
{stream_module}worker_processes 1; daemon off; pid {self.work}/nginx.pid; error_log {self.work}/error.log {log_level};
worker_rlimit_nofile {connections * 2 + 64};
events {{ worker_connections {connections}; }}
rtmp {{ log_format bytes '$command "$name" $bytes_received $bytes_sent';
  server {{ listen {self.host}:{self.port}; out_queue 16384; access_log {self.work}/access.log bytes;
    application live {{ live on; {app_conf} }} }} }}
{stream}""")
        self.start_again()

    def start_again(self):
        """Starts the server (again, after `kill`) with the same port and files."""
        self.proc = subprocess.Popen(self.prefix + ["nginx", "-p", self.work, "-c",
                                                    os.path.join(self.work, "nginx.conf")])
        # Behind a NetLab's 50 ms each way a connection takes more than
        # 0.1 s: give each attempt a second.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), 1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.terminate(); self.proc.wait()
        sys.exit("bench: nginx did not start")

    def kill(self):
        """Stops the server (SIGTERM: master and worker go), keeping its files."""
        self.proc.terminate(); self.proc.wait()

    def recordings(self):
        files = [os.path.join(self.rec, f) for f in os.listdir(self.rec)]
        return sorted(files, key=os.path.getmtime)

    def url(self, stream):
        return f"rtmp://{self.host}:{self.port}/live/{stream}"

    def rtmps_url(self, stream):
        return f"rtmps://localhost:{self.tls_port}/live/{stream}"

    def read(self, name):
        p = os.path.join(self.work, name)
        return open(p).read() if os.path.exists(p) else ""

    def wait_line(self, prefix, timeout=10):
        """The access log line starting with `prefix` (written when that
        client leaves), or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for l in self.read("access.log").splitlines():
                if l.startswith(prefix):
                    return l
            time.sleep(0.05)
        return None

    def wait_player(self, stream, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if f"play: name='{stream}'" in self.read("error.log"):
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self.proc.terminate(); self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)
