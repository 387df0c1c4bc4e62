#!/usr/bin/env python3
"""Probe: pipelined MULTI/EXEC against the same commands without MULTI, on any RESP server.
Usage: benches/probes/multi_exec.py PORT MODE [conns] [batches] [per_batch]
MODE multi: MULTI; SET k v; PEXPIREAT k t; EXEC    plain: SET k v; PEXPIREAT k t
Each connection writes per_batch of them in one write and reads every reply line back.
Prints transactions (multi) or command pairs (plain) per second. A Python client: its own
CPU bounds the figures, so compare servers and modes within one run, not absolute numbers."""
import socket, sys, threading, time, random
port = int(sys.argv[1]); mode = sys.argv[2]
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 8
batches = int(sys.argv[4]) if len(sys.argv) > 4 else 200
per = int(sys.argv[5]) if len(sys.argv) > 5 else 100
def cmd(*a):
    out = b"*%d\r\n" % len(a)
    for x in a:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out
val = b"v" * 160
t = int(time.time() * 1000) + 3600_000
def batch(rng):
    buf = []
    for _ in range(per):
        k = b"key:%d" % rng.randrange(100000)
        body = cmd(b"SET", k, val) + cmd(b"PEXPIREAT", k, t)
        buf.append(cmd(b"MULTI") + body + cmd(b"EXEC") if mode == "multi" else body)
    return b"".join(buf)
lines_per = 6 if mode == "multi" else 2
done = [0]
def worker(i):
    rng = random.Random(i)
    bufs = [batch(rng) for _ in range(8)]
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in range(batches):
        s.sendall(bufs[b % 8])
        want = lines_per * per; got = 0
        while got < want:
            data = s.recv(1 << 20)
            if not data: raise SystemExit("closed")
            if data.startswith(b"-") or b"\r\n-" in data: raise SystemExit("error reply: %r" % data[:200])
            got += data.count(b"\r\n")
    s.close(); done[0] += batches * per
start = time.time()
th = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
[x.start() for x in th]; [x.join() for x in th]
el = time.time() - start
print("%s %d/s" % (mode, done[0] / el))
