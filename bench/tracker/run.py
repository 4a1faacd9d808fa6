#!/usr/bin/env python3
"""bench/tracker: voxd-tracker against opentracker with the same load generator, same machine,
same run. Measures announces per second over UDP and over HTTP (keep-alive where the server allows
it), announce latency at half the peak rate, and memory per stored IPv4 peer.

Usage: bench/tracker/run.py [--seconds 5] [--runs 3] [--peers 1000000] [--report bench/tracker/REPORT.md]
Needs a build in ./build and Debian's opentracker (scripts/install-deps --test)."""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOADGEN = os.path.join(ROOT, "build", "bench", "tracker", "voxd-tracker-loadgen")
TRACKER = os.path.join(ROOT, "build", "tracker", "voxd-tracker")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import free_port, wait_until  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, kind, work, hashes_file):
        self.kind = kind
        self.port = free_port("127.0.0.1")
        if kind == "voxd":
            cmd = [TRACKER, "--listen", "127.0.0.1:%d" % self.port, "--udp", "127.0.0.1:%d" % self.port,
                   "--data-dir", os.path.join(work, "voxd-data"), "--interval", "1800"]
        else:
            # Debian's opentracker is built with a white list; chroot dir and list live in work/.
            shutil.copy(hashes_file, os.path.join(work, "whitelist"))
            cmd = ["opentracker", "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port), "-d", work,
                   "-w", "whitelist"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._up(), 10, kind + " to listen")
        time.sleep(0.3)

    def _up(self):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/announce" % self.port, timeout=0.5).read()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(mode, port, hashes, seconds, concurrency, rate=None):
    cmd = [LOADGEN, mode, "127.0.0.1", str(port), hashes, str(seconds), str(concurrency)]
    if rate:
        cmd.append(str(int(rate)))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit("loadgen failed: " + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peers", type=int, default=1_000_000)
    ap.add_argument("--report")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="voxd-bench-tracker-")
    hashes = os.path.join(work, "hashes.txt")
    with open(hashes, "w") as f:
        f.write("".join(os.urandom(20).hex() + "\n" for _ in range(64)))
    res = {}
    try:
        for kind in ("voxd", "opentracker"):
            d = os.path.join(work, kind)
            os.makedirs(d)
            srv = Server(kind, d, hashes)
            try:
                r = {}
                r["udp"] = statistics.median(load("udp", srv.port, hashes, a.seconds, 64)["per_second"] for _ in range(a.runs))
                r["http"] = statistics.median(load("http", srv.port, hashes, a.seconds, 16)["per_second"] for _ in range(a.runs))
                r["udp_lat"] = load("udp", srv.port, hashes, a.seconds, 64, r["udp"] / 2)
                r["http_lat"] = load("http", srv.port, hashes, a.seconds, 16, r["http"] / 2)
            finally:
                srv.stop()
            # Memory: a fresh process, then exactly --peers distinct IPv4 peers.
            srv = Server(kind, d, hashes)
            try:
                before = rss_kib(srv.proc.pid)
                subprocess.run([LOADGEN, "fill", "127.0.0.1", str(srv.port), hashes, str(a.peers)], check=True,
                               capture_output=True, timeout=600)
                after = rss_kib(srv.proc.pid)
                r["bytes_per_peer"] = (after - before) * 1024 / a.peers
            finally:
                srv.stop()
            res[kind] = r
            print(kind, json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    v, o = res["voxd"], res["opentracker"]
    rows = [
        ("UDP announces/s (64 in flight)", "%.0f" % v["udp"], "%.0f" % o["udp"], "%.2f (target ≥ 1.0)" % (v["udp"] / o["udp"])),
        ("HTTP announces/s (16 connections)", "%.0f" % v["http"], "%.0f" % o["http"], "%.2f (target ≥ 1.0)" % (v["http"] / o["http"])),
        ("UDP p50 / p99 at half peak", "%.0f / %.0f µs" % (v["udp_lat"]["p50_us"], v["udp_lat"]["p99_us"]),
         "%.0f / %.0f µs" % (o["udp_lat"]["p50_us"], o["udp_lat"]["p99_us"]), "target p99 < 1000 µs"),
        ("HTTP p50 / p99 at half peak", "%.0f / %.0f µs" % (v["http_lat"]["p50_us"], v["http_lat"]["p99_us"]),
         "%.0f / %.0f µs" % (o["http_lat"]["p50_us"], o["http_lat"]["p99_us"]), "target p99 < 1000 µs"),
        ("memory per stored IPv4 peer (RSS)", "%.1f B" % v["bytes_per_peer"], "%.1f B" % o["bytes_per_peer"],
         "target ≤ 64 B"),
    ]
    table = "| measure | voxd-tracker | opentracker | ratio / target |\n|---|---|---|---|\n" + "\n".join(
        "| %s | %s | %s | %s |" % r for r in rows) + "\n"
    print(table)
    if a.report:
        cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
        ot = subprocess.run(["sh", "-c", "dpkg-query -W -f='${Version}' opentracker"], capture_output=True, text=True).stdout
        with open(a.report, "w") as f:
            f.write("# bench/tracker — voxd-tracker against opentracker\n\n")
            f.write("Both trackers on loopback, driven by the same load generator (`bench/tracker/loadgen.cpp`) on the\n"
                    "same 2-core machine (so the load generator takes a core of its own), one after the other in one\n"
                    "run. Announces use 64 info-hashes (opentracker's white list holds them) and ports cycling over\n"
                    "64000 values, numwant 50. Throughput is the median of %d runs of %g s; latency is measured at\n"
                    "half of each tracker's own peak rate; memory is the RSS growth after storing exactly %d\n"
                    "distinct IPv4 peers in a fresh process. opentracker closes each HTTP connection after one\n"
                    "answer (no keep-alive), so its HTTP figure includes a TCP connect per announce.\n\n"
                    % (a.runs, a.seconds, a.peers))
            f.write("Command: `bench/tracker/run.py --seconds %g --runs %d --peers %d --report bench/tracker/REPORT.md`\n\n"
                    % (a.seconds, a.runs, a.peers))
            f.write("Machine: %s, %d cores, Linux %s; opentracker %s (Debian); date %s.\n\n"
                    % (cpu, os.cpu_count(), platform.release(), ot, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
            f.write(table)


if __name__ == "__main__":
    main()
