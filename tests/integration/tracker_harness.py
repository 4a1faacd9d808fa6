"""Helpers for tracker tests: start voxd-tracker, speak BEP 15, build torrents, run commands in a
network namespace that has nothing but loopback (for clients that try DHT and the like)."""
import hashlib
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from harness import BUILD, free_port, read_text, wait_until

TRACKER = os.path.join(BUILD, "tracker", "voxd-tracker")


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, str):
        return bencode(x.encode())
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(x)


def bdecode(b):
    def dec(i):
        c = b[i:i + 1]
        if c == b"i":
            e = b.index(b"e", i)
            return int(b[i + 1:e]), e + 1
        if c == b"l":
            out, i = [], i + 1
            while b[i:i + 1] != b"e":
                v, i = dec(i)
                out.append(v)
            return out, i + 1
        if c == b"d":
            out, i = {}, i + 1
            while b[i:i + 1] != b"e":
                k, i = dec(i)
                v, i = dec(i)
                out[k] = v
            return out, i + 1
        colon = b.index(b":", i)
        n = int(b[i:colon])
        return b[colon + 1:colon + 1 + n], colon + 1 + n
    return dec(0)[0]


def make_torrent(path, name, announce, piece=1 << 18):
    """A deterministic single-file v1 torrent of the file at path, named `name`."""
    pieces = b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(piece), b""):
            pieces += hashlib.sha1(chunk).digest()
    info = {"length": os.path.getsize(path), "name": name, "piece length": piece, "pieces": pieces}
    meta = {"info": info}
    if announce:
        meta["announce"] = announce
    return bencode(meta), hashlib.sha1(bencode(info)).digest()


class Tracker:
    def __init__(self, workdir, ip="127.0.0.1", netns=None, token="publish-secret", extra=()):
        self.dir = workdir
        self.ip = ip
        self.netns = netns
        self.port = free_port(ip) if netns is None else random.randint(20000, 60000)
        self.data = os.path.join(workdir, "tracker-data")
        self.token = token
        self.extra = list(extra)
        self.proc = None
        self.log = os.path.join(workdir, "tracker-%d.log" % self.port)

    def start(self):
        host = "[%s]" % self.ip if ":" in self.ip else self.ip
        args = [TRACKER, "--listen", "%s:%d" % (host, self.port), "--udp", "%s:%d" % (host, self.port),
                "--data-dir", self.data] + self.extra
        if self.token:
            tf = os.path.join(self.dir, "publish-token")
            with open(tf, "w") as f:
                f.write(self.token + "\n")
            args += ["--publish-token-file", tf]
        if self.netns:
            args = ["ip", "netns", "exec", self.netns] + args
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        wait_until(lambda: self.proc.poll() is not None or "ready" in self.read_log(), 15, "voxd-tracker to start")
        if self.proc.poll() is not None:
            raise AssertionError("voxd-tracker exited %d:\n%s" % (self.proc.returncode, self.read_log()))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def read_log(self):
        return read_text(self.log)

    @property
    def url(self):
        return "http://%s:%d" % ("[%s]" % self.ip if ":" in self.ip else self.ip, self.port)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url.replace("[::]", "[::1]") + path, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def request(self, method, path, body=b"", token=None):
        req = urllib.request.Request(self.url.replace("[::]", "[::1]") + path, data=body, method=method)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def announce(self, info_hash, port, left=0, event=None, peer_id=None, extra=""):
        q = "info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d&compact=1" % (
            urllib.parse.quote(info_hash), urllib.parse.quote(peer_id or os.urandom(20)), port, left)
        if event:
            q += "&event=" + event
        status, body = self.get("/announce?" + q + extra)
        return bdecode(body)

    def metric(self, name, labels=""):
        """Sum of the samples of a metric whose labels contain `labels`."""
        _, body = self.get("/metrics")
        total, found = 0.0, False
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            key, value = line.rsplit(" ", 1)
            if (key == name or key.startswith(name + "{")) and labels in key:
                total += float(value)
                found = True
        return total if found else None


class UdpClient:
    def __init__(self, ip, port):
        self.addr = (ip, port)
        self.s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(5)

    def close(self):
        self.s.close()

    def exchange(self, packet):
        self.s.sendto(packet, self.addr)
        data, _ = self.s.recvfrom(65536)
        return data

    def connect(self):
        tx = random.getrandbits(32)
        r = self.exchange(struct.pack(">QII", 0x41727101980, 0, tx))
        action, rtx, conn = struct.unpack(">IIQ", r)
        assert action == 0 and rtx == tx, r
        return conn

    def announce(self, conn, info_hash, port, left=0, event=2, numwant=-1, options=b""):
        tx = random.getrandbits(32)
        pkt = struct.pack(">QII20s20sQQQIIIiH", conn, 1, tx, info_hash, os.urandom(20), 0, left, 0, event, 0, 0,
                          numwant, port) + options
        return self.exchange(pkt), tx

    def scrape(self, conn, hashes):
        tx = random.getrandbits(32)
        return self.exchange(struct.pack(">QII", conn, 2, tx) + b"".join(hashes)), tx


class Netns:
    """A network namespace with nothing but loopback, removed on close."""

    def __init__(self):
        self.name = "voxd-test-%d-%d" % (os.getpid(), random.getrandbits(20))
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def run(self, args, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name] + args, **kw)

    def popen(self, args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + args, **kw)

    def close(self):
        subprocess.run(["ip", "netns", "pids", self.name], capture_output=True)
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), 9)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
