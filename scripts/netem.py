#!/usr/bin/env python3
"""A network impairment bridge for the tests' network namespaces: it joins
two interfaces at layer 2 (raw AF_PACKET sockets) and delays, drops or
blacks out the frames crossing, in both directions.

This does what `tc qdisc ... netem` does for the tests; it exists because
some kernels (this project's CI machines among them) ship without sch_netem
and without the tc actions that could stand in for it. The frames are real
Ethernet frames carrying the real TCP connection, so losses are seen and
repaired by TCP itself (retransmissions, RTO backoff), exactly as behind a
lossy link. The interfaces must have TSO/GSO and checksum offload off
(the tests' lab does that with ethtool), or frames would be larger than the
MTU or carry unfinished checksums.

  netem.py IFACE_A IFACE_B

Commands on stdin, one per line, take effect at once:
  delay MS      one-way delay added in each direction
  loss PERCENT  random loss in each direction (0-100)
  blackout on|off
  stats         prints "frames F dropped D" on stdout
The bridge runs until stdin closes.
"""
import collections, os, random, select, socket, sys, time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def open_iface(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return s


def main():
    a, b = open_iface(sys.argv[1]), open_iface(sys.argv[2])
    peer = {a: b, b: a}
    # One queue per direction: the delay is the same for every frame, so
    # each stays in order.
    queues = {a: collections.deque(), b: collections.deque()}
    delay, loss, blackout = 0.0, 0.0, False
    frames = dropped = 0
    stdin = sys.stdin.fileno()
    buf = b""
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in queues.values() if q]
        wait = max(0.0, min(due) - now) if due else 0.5
        ready, _, _ = select.select([a, b, stdin], [], [], wait)
        now = time.monotonic()
        for s in ready:
            if s == stdin:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    words = line.decode().split()
                    if not words:
                        continue
                    if words[0] == "delay":
                        delay = float(words[1]) / 1000.0
                    elif words[0] == "loss":
                        loss = float(words[1]) / 100.0
                    elif words[0] == "blackout":
                        blackout = words[1] == "on"
                    elif words[0] == "stats":
                        print(f"frames {frames} dropped {dropped}", flush=True)
                continue
            # Drain what the interface has.
            while True:
                try:
                    data, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own sends, seen again
                frames += 1
                if blackout or (loss > 0 and random.random() < loss):
                    dropped += 1
                    continue
                queues[s].append((now + delay, data))
        for src, q in queues.items():
            out = peer[src]
            while q and q[0][0] <= now:
                _, data = q.popleft()
                try:
                    out.send(data)
                except (BlockingIOError, OSError):
                    dropped += 1  # a full device queue drops, as a link would


if __name__ == "__main__":
    main()
