#!/usr/bin/env python3
"""bench/swarm: how much sooner, and how much cheaper for the origin, a fleet gets a model with voxd
than with what its users would otherwise run. Run as root from the repository:

    sudo python3 bench/swarm/run.py                       # every scenario, every tool
    sudo python3 bench/swarm/run.py --scenario office --tools voxd,aria2-hybrid

Each scenario (scenarios/*.yaml) builds its network of namespaces (netlab.py), starts the origin
(nginx as the CDN, the Hub fixture of the test suite as the Hub API) and runs each tool on every
host in turn, with a fresh tracker and fresh disks. It prints a Markdown table per scenario, writes
it with the plots to --out, and removes everything it created on exit, on error and on Ctrl-C."""
import argparse
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

from netlab import Lab, netem_available, parse_duration, parse_rate  # noqa: E402
from harness import read_text, sha256_file, wait_until  # noqa: E402
from swarm_harness import piece_size_for  # noqa: E402
from tracker_harness import bdecode, bencode, make_torrent  # noqa: E402

BUILD = os.environ.get("VOXD_BUILD_DIR", os.path.join(ROOT, "build"))
DAEMON = os.path.join(BUILD, "daemon", "voxd-daemon")
CLI = os.path.join(BUILD, "cli", "voxd")
TRACKER = os.path.join(BUILD, "tracker", "voxd-tracker")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TOOLS = ["voxd", "aria2-hybrid", "curl", "aria2"]
DEFAULT_SCENARIOS = ["far-mirror", "office", "staggered", "churn", "two-sites", "flaky-origin"]

REPO = "openbmb/VoxCPM1.5"
COMMIT = "7b" * 20
ORIGIN_IP, CDN_PORT, HUB_PORT = "10.0.0.2", 8000, 8001
TRACKER_IP, TRACKER_PORT = "10.0.0.3", 6969
SECRET = "bench-secret"
PUBLISH_TOKEN = "bench-publish-token"
LFS_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
SAMPLE_EVERY = 0.5
MiB = 1 << 20


class BenchError(Exception):
    pass


# ---- scenarios ---------------------------------------------------------------------------------
def parse_size(text, where):
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    s = str(text).strip()
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u) and s[:-len(u)].strip().replace(".", "", 1).isdigit():
            return int(float(s[:-len(u)]) * units[u])
    raise BenchError("%s: size %r: expected a number with B, KiB, MiB or GiB" % (where, text))


def load_scenario(arg):
    path = arg if os.path.sep in arg or arg.endswith(".yaml") else os.path.join(HERE, "scenarios", arg + ".yaml")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise BenchError("scenario %s: %s" % (arg, e.strerror))
    except yaml.YAMLError as e:
        raise BenchError("%s: %s" % (path, e))
    if not isinstance(raw, dict):
        raise BenchError("%s: expected a mapping at the top" % path)

    def keys(node, where, known):
        """A mapping at `where` (None for absent) holding only keys from `known`."""
        if node is None:
            return {}
        if not isinstance(node, dict):
            raise BenchError("%s: %s: expected a mapping" % (path, where or "the top"))
        for k in node:
            if k not in known:
                raise BenchError("%s: %sunknown key %r (known: %s)" % (
                    path, where + ": " if where else "", k, ", ".join(sorted(known))))
        return node

    keys(raw, "", {"description", "model", "origin", "sites", "start", "churn", "timeout", "tools"})
    for k in ("model", "origin", "sites"):
        if k not in raw:
            raise BenchError("%s: missing key %r" % (path, k))

    def rate(value, where):
        try:
            return parse_rate(value)
        except ValueError as e:
            raise BenchError("%s: %s: %s" % (path, where, e))

    def duration(value, where):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise BenchError("%s: %s: %s" % (path, where, e))

    sc = dict(name=os.path.basename(path)[:-5], path=path, description=raw.get("description", ""))
    sc["files"] = [(p, parse_size(v, "%s: model.%s" % (path, p))) for p, v in raw["model"].items()]
    o = keys(raw["origin"], "origin", {"up", "fail", "per_connection"})
    sc["origin_up"] = rate(o.get("up"), "origin.up")
    # nginx's limit_rate on every CDN connection, in bytes per second (0: none).
    sc["origin_per_connection"] = (rate(o.get("per_connection"), "origin.per_connection") or 0) / 8
    if not sc["origin_up"]:
        raise BenchError("%s: origin.up: the origin's uplink must be shaped (it is the slow one)" % path)
    sc["origin_fail"] = float(o.get("fail", 0))
    if not 0 <= sc["origin_fail"] < 1:
        raise BenchError("%s: origin.fail: %r is not a share in [0, 1)" % (path, o.get("fail")))
    sc["sites"] = []
    if not isinstance(raw["sites"], list):
        raise BenchError("%s: sites: expected a list" % path)
    for i, s in enumerate(raw["sites"], 1):
        where = "sites[%d]" % (i - 1)
        keys(s, where, {"hosts", "link", "wan"})
        link = keys(s.get("link"), where + ".link", {"up", "down", "delay", "loss"})
        wan = keys(s.get("wan"), where + ".wan", {"up", "down", "delay", "loss"})
        sc["sites"].append(dict(
            hosts=int(s["hosts"]), up=rate(link.get("up"), where + ".link.up"),
            down=rate(link.get("down"), where + ".link.down"), delay=duration(link.get("delay"), where + ".link.delay"),
            loss=float(link.get("loss", 0)), wan_up=rate(wan.get("up"), where + ".wan.up"),
            wan_down=rate(wan.get("down"), where + ".wan.down"), wan_delay=duration(wan.get("delay"), where + ".wan.delay"),
            wan_loss=float(wan.get("loss", 0))))
    sc["start_every"] = duration(keys(raw.get("start"), "start", {"every"}).get("every", 0), "start.every")
    churn = keys(raw.get("churn"), "churn", {"leave", "at"})
    sc["churn_leave"] = int(churn.get("leave", 0))
    sc["churn_at"] = float(churn.get("at", 0.5))
    sc["timeout"] = duration(raw.get("timeout", "10min"), "timeout")
    sc["tools"] = raw.get("tools", TOOLS)
    for t in sc["tools"]:
        if t not in TOOLS:
            raise BenchError("%s: tools: unknown tool %r (known: %s)" % (path, t, ", ".join(TOOLS)))
    return sc


def lower_bound(sc):
    """The fluid model's T* = max(S/U_origin, N*S/(U_origin + sum U_peers), S/D_min), in seconds."""
    size = sum(n for _, n in sc["files"])
    u_o = sc["origin_up"] / 8
    ups = [s["up"] / 8 if s["up"] else math.inf for s in sc["sites"] for _ in range(s["hosts"])]
    downs = [s["down"] / 8 if s["down"] else math.inf for s in sc["sites"] for _ in range(s["hosts"])]
    n = len(ups)
    terms = {"S/U_origin": size / u_o, "N*S/(U_origin+sum U_peers)": n * size / (u_o + sum(ups)),
             "S/D_min": size / min(downs)}
    which = max(terms, key=terms.get)
    return terms[which], which


# ---- the origin: model files, nginx, the Hub fixture -------------------------------------------
class Origin:
    def __init__(self, sc, work, host, tracker_host):
        self.work, self.host, self.tracker_host = work, host, tracker_host
        self.files = []  # (path, local file, lfs, sha256)
        data = os.path.join(work, "model")
        for sub in ("cdn", "plain"):
            os.makedirs(os.path.join(work, "cdnroot", sub))
        os.makedirs(os.path.join(work, "tmp"))
        for i, (path, size) in enumerate(sc["files"]):
            local = os.path.join(data, path)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            lfs = path.endswith(LFS_SUFFIXES)
            rnd = random.Random(1000 + i)
            with open(local, "wb") as f:
                left = size
                while left:
                    n = min(left, 4 * MiB)
                    f.write(rnd.randbytes(n) if lfs else bytes(rnd.choice(b"abcdefghij {}\":,\n") for _ in range(n)))
                    left -= n
            digest = sha256_file(local)
            if lfs:
                for sub in ("cdn", "plain"):
                    dst = os.path.join(work, "cdnroot", sub, digest)
                    if not os.path.exists(dst):
                        os.link(local, dst)
            self.files.append((path, local, lfs, digest))
        self.size = sum(os.path.getsize(f) for _, f, _, _ in self.files)
        self.world = os.path.join(work, "world.json")
        with open(self.world, "w") as f:
            json.dump({"repos": {REPO: {"refs": {"main": COMMIT}, "commits": {COMMIT: [
                dict(path=p, file=l, lfs=lfs) for p, l, lfs, _ in self.files]}}}}, f)
        self.nginx_log = os.path.join(work, "cdn-access.log")
        self.hub_log = os.path.join(work, "hub.log")
        self._start(sc)

    def _start(self, sc):
        with open(os.path.join(FIXTURES, "nginx.conf.in")) as f:
            conf = f.read()
        conf = require_replace(conf, "worker_connections 256", "worker_connections 4096")
        if sc["origin_fail"]:
            # A flaky CDN: a share of all requests, chosen at random, answered 503.
            conf = require_replace(conf, "    server {\n", '    split_clients "${request_id}" $vxb_fail {\n'
                                   '        %.1f%% 1;\n        * "";\n    }\n    server {\n' % (sc["origin_fail"] * 100))
            conf = require_replace(conf, "root @ROOT@;", "root @ROOT@;\n        if ($vxb_fail) { return 503; }")
        conf = (conf.replace("@DIR@", self.work).replace("@LISTEN@", "%s:%d" % (ORIGIN_IP, CDN_PORT))
                .replace("@ROOT@", os.path.join(self.work, "cdnroot")).replace("@SECRET@", SECRET)
                .replace("@LIMIT_RATE@", "0"))
        path = os.path.join(self.work, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        if sc["origin_per_connection"]:
            self.limit_connections(sc["origin_per_connection"])
        self.host.popen(["nginx", "-c", path, "-e", os.path.join(self.work, "nginx-error.log")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = os.path.join(self.work, "hub.port")
        self.host.popen([sys.executable, os.path.join(FIXTURES, "hub_fixture.py"), "--listen",
                         "%s:%d" % (ORIGIN_IP, HUB_PORT), "--world", self.world, "--cdn-url",
                         "http://%s:%d" % (ORIGIN_IP, CDN_PORT), "--secret", SECRET, "--page-size", "100",
                         "--log", self.hub_log, "--ready-file", ready],
                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "hub.err"), "w"))
        wait_for(lambda: os.path.exists(ready) and os.path.exists(os.path.join(self.work, "nginx.pid")), 30,
                 "nginx and the Hub fixture to start (see %s)" % self.work)
        digest = next(d for _, _, lfs, d in self.files if lfs)
        # Retried: the flaky-origin scenario's CDN fails some requests on purpose.
        probe = self.host.popen(["curl", "-sf", "--retry", "10", "--retry-all-errors", "--retry-delay", "0",
                                 "-o", "/dev/null", "-r", "0-0", self.webseed_url(digest)])
        if probe.wait() != 0:
            raise BenchError("nginx cannot serve %s (its workers run as nobody: every directory above --work "
                             "must be readable by others)" % self.work)

    def limit_connections(self, nbytes):
        """Every CDN connection gets at most nbytes/s, as over a long lossy path: an nftables policer
        per connection (client address and port) on the origin's egress drops what is above the
        rate. nginx's limit_rate is per request and lets each one send about a second's worth at
        once, so tools making small requests (web-seed pieces, the end of a range engine's file)
        would barely be limited by it."""
        # The empty table and its deletion first make this safe to run twice.
        rule = ("table inet vxb_conn {}\ndelete table inet vxb_conn\n"
                "table inet vxb_conn {\n  set flows { type ipv4_addr . inet_service; flags dynamic; timeout 1m; }\n"
                "  chain out {\n    type filter hook output priority 0;\n"
                "    tcp sport %d update @flows { ip daddr . tcp dport limit rate over %d bytes/second burst %d bytes }"
                " drop\n  }\n}\n" % (CDN_PORT, int(nbytes), max(64 << 10, int(nbytes / 8))))
        p = self.host.popen(["nft", "-f", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = p.communicate(rule)
        if p.returncode != 0:
            raise BenchError("nft (per-connection limit at the origin): %s" % err.strip())

    @property
    def hub_url(self):
        return "http://%s:%d" % (ORIGIN_IP, HUB_PORT)

    def resolve_url(self, path):
        return "%s/%s/resolve/main/%s" % (self.hub_url, REPO, path)

    def webseed_url(self, digest):
        return "http://%s:%d/plain/%s" % (ORIGIN_IP, CDN_PORT, digest)

    def mark(self):
        return (file_size(self.nginx_log), file_size(self.hub_log))

    def bytes_since(self, mark):
        """Payload bytes the origin (CDN and Hub) served since mark."""
        total = 0
        if os.path.exists(self.nginx_log):
            with open(self.nginx_log, "rb") as f:
                f.seek(mark[0])
                for line in f:
                    total += int(line.split(b" ", 3)[2])
        if os.path.exists(self.hub_log):
            with open(self.hub_log, "rb") as f:
                f.seek(mark[1])
                for line in f:
                    total += json.loads(line).get("bytes") or 0
        return total

    def expected(self):
        return {p: d for p, _, _, d in self.files}


# ---- the tools ---------------------------------------------------------------------------------
class Tool:
    """One way of getting the model onto every host: prepare(), then start() per host as it
    arrives; poll() says True once the host has every file, False when it gave up."""

    def __init__(self, origin, rdir):
        self.origin, self.rdir, self.procs = origin, rdir, {}

    def dir(self, host):
        d = os.path.join(self.rdir, host.name)
        os.makedirs(d, exist_ok=True)
        return d

    def prepare(self, hosts):
        pass

    def poll(self, host):
        rc = self.procs[host.name].poll()
        return None if rc is None else rc == 0

    def stop(self, hosts):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for h in hosts:
            h.kill_all()

    def output(self, host, path):
        return os.path.join(self.dir(host), "out", path)

    def received_twice(self, hosts):
        """Bytes each finished host received twice, where the tool tells; {} otherwise."""
        return {}

    def log(self, host, name):
        return open(os.path.join(self.dir(host), name), "a")


class Voxd(Tool):
    name = "voxd"

    def prepare(self, hosts):
        self.daemons = {}
        token = os.path.join(self.rdir, "publish-token")
        with open(token, "w") as f:
            f.write(PUBLISH_TOKEN + "\n")
        for h in hosts:
            d = self.dir(h)
            os.makedirs(os.path.join(d, "run"), mode=0o750)  # the daemon refuses a socket others can reach
            cfg = os.path.join(d, "voxd.yaml")
            with open(cfg, "w") as f:
                f.write("\n".join([
                    "socket: %s/run/voxd.sock" % d, "state_dir: %s/state" % d, "hub_cache: %s/out" % d,
                    "log_level: %s" % os.environ.get("VOXD_BENCH_LOG_LEVEL", "info"), "origins:", "  - url: %s" % self.origin.hub_url,
                    "tracker: http://%s:%d/announce" % (TRACKER_IP, TRACKER_PORT),
                    "registry_token_file: %s" % token, "peer:", "  listen: %s:6881" % h.ip,
                    # An office LAN: the upload cap protects uplinks, not the LAN itself.
                    "bandwidth:", "  lan_uncapped: true", ""]))
            self.daemons[h.name] = h.popen([DAEMON, "--config", cfg], stdout=self.log(h, "daemon.log"),
                                           stderr=subprocess.STDOUT)
        for h in hosts:
            wait_for(lambda: self.daemons[h.name].poll() is not None or self.cli(h, "status").returncode == 0, 30,
                     "voxd-daemon on %s to answer" % h.name)
            if self.daemons[h.name].poll() is not None:
                raise BenchError("voxd-daemon on %s exited %d; see %s/daemon.log" % (
                    h.name, self.daemons[h.name].returncode, self.dir(h)))

    def cli(self, host, *args):
        return subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, VOXD_SOCKET=os.path.join(self.dir(host), "run", "voxd.sock")))

    def start(self, host):
        self.procs[host.name] = subprocess.Popen(
            [CLI, "add", REPO], stdout=self.log(host, "add.out"), stderr=subprocess.STDOUT,
            env=dict(os.environ, VOXD_SOCKET=os.path.join(self.dir(host), "run", "voxd.sock")))

    def output(self, host, path):
        return os.path.join(self.dir(host), "out", "models--" + REPO.replace("/", "--"), "snapshots", COMMIT, path)

    def received_twice(self, hosts):
        out = {}
        for h in hosts:
            r = self.cli(h, "status", REPO, "--json")
            if r.returncode == 0:
                out[h.name] = json.loads(r.stdout).get("bytes_redundant", 0)
        return out


class Curl(Tool):
    name = "curl"

    def start(self, host):
        out = os.path.join(self.dir(host), "out")
        script = "set -e\n" + "".join(
            "curl -sSfL --create-dirs --retry 30 --retry-all-errors --retry-delay 1 -o %s %s\n" % (
                shlex.quote(os.path.join(out, p)), shlex.quote(self.origin.resolve_url(p)))
            for p, _, _, _ in self.origin.files)
        self.procs[host.name] = host.popen(["sh", "-c", script], stdout=self.log(host, "curl.out"),
                                           stderr=subprocess.STDOUT)


ARIA2_COMMON = ["--console-log-level=warn", "--summary-interval=0", "--file-allocation=falloc",
                "--auto-file-renaming=false", "--allow-overwrite=true", "--max-tries=0", "--retry-wait=1"]


class Aria2(Tool):
    name = "aria2"

    def start(self, host):
        d = self.dir(host)
        lst = os.path.join(d, "input")
        with open(lst, "w") as f:
            for p, _, _, _ in self.origin.files:
                f.write("%s\n  out=%s\n" % (self.origin.resolve_url(p), p))
        self.procs[host.name] = host.popen(["aria2c", "-x8", "-s8", "-k1M", "-d", os.path.join(d, "out"), "-i", lst]
                                           + ARIA2_COMMON, stdout=self.log(host, "aria2.out"),
                                           stderr=subprocess.STDOUT)


class Aria2Hybrid(Tool):
    """aria2 on every host with each weights file's torrent (the origin's URL as its web seed, the
    same tracker as voxd) and the small files from the Hub; it keeps seeding until the run ends."""
    name = "aria2-hybrid"

    def prepare(self, hosts):
        self.items = []
        for p, local, lfs, digest in self.origin.files:
            if not lfs:
                self.items.append((p, self.origin.resolve_url(p)))
                continue
            # The same piece size voxd picks for its blob torrents.
            meta, _ = make_torrent(local, os.path.basename(p), "http://%s:%d/announce" % (TRACKER_IP, TRACKER_PORT),
                                   piece_size_for(os.path.getsize(local)))
            d = bdecode(meta)
            d[b"url-list"] = self.origin.webseed_url(digest).encode()
            t = os.path.join(self.rdir, digest + ".torrent")
            with open(t, "wb") as f:
                f.write(bencode(d))
            self.items.append((p, t))

    def start(self, host):
        d = self.dir(host)
        hook = os.path.join(d, "done-hook")
        # aria2 runs the hook with the finished file's path as its third argument.
        write_text(hook, '#!/bin/sh\necho "$3" >> %s' % shlex.quote(os.path.join(d, "done")))
        os.chmod(hook, 0o755)
        lst = os.path.join(d, "input")
        with open(lst, "w") as f:
            for p, src in self.items:
                f.write("%s\n  dir=%s\n" % (src, os.path.dirname(os.path.join(d, "out", p))))
                if src.startswith("http"):
                    f.write("  out=%s\n" % os.path.basename(p))
        self.procs[host.name] = host.popen(
            ["aria2c", "-i", lst, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
             "--seed-ratio=0.0", "--on-bt-download-complete=" + hook, "--on-download-complete=" + hook]
            + ARIA2_COMMON, stdout=self.log(host, "aria2.out"), stderr=subprocess.STDOUT)

    def poll(self, host):
        if self.procs[host.name].poll() is not None:
            return False  # it seeds until stopped: an exit means it failed
        out = os.path.join(self.dir(host), "out")
        done = {os.path.relpath(l, out) for l in read_lines(os.path.join(self.dir(host), "done"))}
        return True if all(p in done for p, _ in self.items) else None


TOOL_CLASSES = {c.name: c for c in (Voxd, Curl, Aria2, Aria2Hybrid)}


# ---- one scenario ------------------------------------------------------------------------------
def build_network(sc, lab):
    origin = lab.add_host("origin", ORIGIN_IP, up=sc["origin_up"])
    tracker = lab.add_host("tracker", TRACKER_IP)
    hosts = []
    for i, s in enumerate(sc["sites"], 1):
        lab.add_site(i, s["wan_up"], s["wan_down"], s["wan_delay"], s["wan_loss"])
        for _ in range(s["hosts"]):
            n = len(hosts) + 1
            hosts.append(lab.add_host("h%d" % n, "10.%d.0.%d" % (i, 10 + n), site=i, up=s["up"], down=s["down"],
                                      delay=s["delay"], loss=s["loss"]))
    return origin, tracker, hosts


def leavers(sc, hosts):
    """The hosts that leave mid-way: spread evenly over the list (the first host is among them)."""
    k = sc["churn_leave"]
    if not k:
        return []
    step = len(hosts) / k
    return [hosts[int(i * step)] for i in range(k)]


def run_tool(name, sc, lab, origin, tracker_host, hosts, work, t_star, log):
    rdir = os.path.join(work, name)
    os.makedirs(rdir)
    tool = TOOL_CLASSES[name](origin, rdir)
    tracker = tracker_host.popen([TRACKER, "--listen", "%s:%d" % (TRACKER_IP, TRACKER_PORT), "--udp",
                                  "%s:%d" % (TRACKER_IP, TRACKER_PORT), "--data-dir", os.path.join(rdir, "tracker"),
                                  "--publish-token-file", write_text(os.path.join(rdir, "token"), PUBLISH_TOKEN)],
                                 stdout=open(os.path.join(rdir, "tracker.log"), "w"), stderr=subprocess.STDOUT)
    wait_for(lambda: tracker.poll() is not None or "ready" in read_text(os.path.join(rdir, "tracker.log")), 15,
             "voxd-tracker to start")
    try:
        tool.prepare(hosts)
        leaving = leavers(sc, hosts)
        mark, c0 = origin.mark(), lab.counters()
        t0 = time.monotonic()
        due = {h.name: t0 + i * sc["start_every"] for i, h in enumerate(hosts)}
        started, finished, failed, left = {}, {}, set(), set()
        samples, next_sample, churned = [], t0, not leaving
        while True:
            now = time.monotonic()
            for h in hosts:
                if h.name not in started and now >= due[h.name]:
                    started[h.name] = now
                    tool.start(h)
            if not churned and now - t0 >= sc["churn_at"] * t_star:
                churned = True
                for h in leaving:
                    left.add(h.name)
                    h.kill_all()
                    p = tool.procs.get(h.name)
                    if p and p.poll() is None:
                        p.kill()
                log("  %s: %s left at %.1f s" % (name, ", ".join(h.name for h in leaving), now - t0))
            for h in hosts:
                if h.name in started and h.name not in finished and h.name not in failed and h.name not in left:
                    r = tool.poll(h)
                    if r is True:
                        finished[h.name] = now - started[h.name]
                    elif r is False:
                        failed.add(h.name)
                        log("  %s: %s gave up; see %s" % (name, h.name, tool.dir(h)))
            if now >= next_sample:
                samples.append((now - t0, dict(traffic(lab.counters(), c0, sc), cpu=cpu_times())))
                next_sample += SAMPLE_EVERY
            if all(h.name in finished or h.name in failed or h.name in left for h in hosts):
                break
            if now - t0 > sc["timeout"]:
                log("  %s: stopped at the %.0f s time bound" % (name, sc["timeout"]))
                break
            time.sleep(0.1)
        final = traffic(lab.counters(), c0, sc)
        samples.append((time.monotonic() - t0, dict(final, cpu=cpu_times())))
        twice = tool.received_twice([h for h in hosts if h.name in finished])
    finally:
        tool.stop(hosts)
        tracker_host.kill_all()
    expected = origin.expected()
    exact, inexact = 0, []
    for h in hosts:
        if h.name in finished:
            bad = [p for p, d in expected.items() if not same_file(tool.output(h, p), d)]
            if bad:
                inexact.append("%s: %s" % (h.name, ", ".join(bad)))
            else:
                exact += 1
    remaining = [h for h in hosts if h.name not in left]
    return dict(tool=name, hosts=len(remaining), finished=finished, failed=sorted(failed), left=sorted(left),
                exact=exact, inexact=inexact, origin_bytes=origin.bytes_since(mark), traffic=final, samples=samples,
                twice=twice,
                cpu=cpu_busy(samples),
                timed_out=[h.name for h in remaining if h.name not in finished and h.name not in failed])


def traffic(now, base, sc):
    """Wire bytes since base: what the origin sent, what hosts received from peers, and what each
    site's WAN link carried into the site."""
    d = {k: (now[k][0] - base[k][0], now[k][1] - base[k][1]) for k in now if k in base}
    origin = d["v-origin"][0]
    tracker = d["v-tracker"][0]
    into_hosts = sum(v[1] for k, v in d.items() if k.startswith("v-h"))
    wan = [d["w%db" % i][1] for i in range(1, len(sc["sites"]) + 1)]
    return dict(origin=origin, peers=max(0, into_hosts - origin - tracker), wan=wan)


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in read_text("/proc/stat").split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def cpu_busy(samples):
    """Mean and peak (over 1 s) share of both cores kept busy during a run, in percent: the
    benchmark's own check that the machine, not the shaped links, was not the bottleneck."""
    cpu = [s[1]["cpu"] for s in samples]
    if len(cpu) < 3:
        return 0.0, 0.0
    busy = lambda a, b: 100.0 * (b[0] - a[0]) / max(1, b[1] - a[1])
    return busy(cpu[0], cpu[-1]), max(busy(cpu[i], cpu[i + 2]) for i in range(len(cpu) - 2))


# ---- output ------------------------------------------------------------------------------------
def percentile(values, q):
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def describe(sc, size, t_star, which, netem):
    rates = []
    for i, s in enumerate(sc["sites"], 1):
        wan = "" if not (s["wan_up"] or s["wan_down"]) else ", WAN %s up / %s down" % (
            fmt_rate(s["wan_up"]), fmt_rate(s["wan_down"]))
        rates.append("site %d: %d hosts at %s up / %s down%s%s%s" % (
            i, s["hosts"], fmt_rate(s["up"]), fmt_rate(s["down"]),
            ", %.1f ms one-way" % (s["delay"] * 1e3) if s["delay"] else "",
            ", %.1f%% loss" % (s["loss"] * 100) if s["loss"] else "", wan))
    lines = ["### %s" % sc["name"], "", sc["description"].strip(), "",
             "- model: %s in %d files; origin uplink %s%s" % (
                 fmt_mib(size), len(sc["files"]), fmt_rate(sc["origin_up"]),
                 (", %d%% of CDN requests fail" % round(sc["origin_fail"] * 100) if sc["origin_fail"] else "") +
                 (", %s per CDN connection (nftables policer per connection)" % fmt_rate(sc["origin_per_connection"] * 8)
                  if sc["origin_per_connection"] else "")),
             "- " + "; ".join(rates)]
    if sc["start_every"]:
        lines.append("- hosts start %.0f s apart" % sc["start_every"])
    if sc["churn_leave"]:
        lines.append("- %d hosts leave (killed) at %.1f x T*" % (sc["churn_leave"], sc["churn_at"]))
    if not netem and any(s["delay"] or s["wan_delay"] for s in sc["sites"]):
        lines.append("- delay: **not applied**, this kernel has no sch_netem")
    lines.append("- T* = %.1f s (%s)" % (t_star, which))
    return lines


def table(sc, results, size, t_star):
    two_sites = len(sc["sites"]) > 1
    head = ["tool", "done", "p50 s", "p90 s", "max s", "max / T*", "origin x S", "peers x S (wire)"]
    if two_sites:
        head += ["WAN in x S, site %d" % i for i in range(1, len(sc["sites"]) + 1)]
    head += ["exact", "CPU % mean / peak"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        t = list(r["finished"].values())
        cells = [r["tool"], "%d/%d" % (len(t), r["hosts"])]
        if t:
            cells += ["%.1f" % percentile(t, 0.5), "%.1f" % percentile(t, 0.9), "%.1f" % max(t),
                      "%.2f" % (max(t) / t_star)]
        else:
            cells += ["-"] * 4
        cells += ["%.3f" % (r["origin_bytes"] / size), "%.2f" % (r["traffic"]["peers"] / size)]
        if two_sites:
            cells += ["%.2f" % (w / size) for w in r["traffic"]["wan"]]
        cells.append("%d/%d" % (r["exact"], len(t)) + (" **%s**" % "; ".join(r["inexact"]) if r["inexact"] else ""))
        cells.append("%.0f / %.0f" % r["cpu"])
        rows.append("| " + " | ".join(cells) + " |")
    out = rows
    vox = next((r for r in results if r["tool"] == "voxd" and r["finished"]), None)
    if vox and len(vox["finished"]) == vox["hosts"]:
        m = max(vox["finished"].values())
        cmp = []
        for r in results:
            if r is vox:
                continue
            if r["finished"] and len(r["finished"]) == r["hosts"]:
                cmp.append("%.1fx sooner than %s" % (max(r["finished"].values()) / m, r["tool"]))
            elif r["hosts"]:
                cmp.append("%s did not finish every host" % r["tool"])
        if cmp:
            out += ["", "Slowest voxd host: " + ", ".join(cmp) + "."]
    for r in results:
        if r.get("twice"):
            shares = [100.0 * b / size for b in r["twice"].values()]
            out.append("- %s: bytes received twice (peers' end game, origin pieces after a peer's copy): mean %.2f%%, "
                       "worst host %.2f%% of the model" % (r["tool"], sum(shares) / len(shares), max(shares)))
    for r in results:
        for what in ("failed", "timed_out"):
            if r[what]:
                out.append("- %s: %s %s" % (r["tool"], what.replace("_", " "), ", ".join(r[what])))
    return out


def plots(sc, results, outdir):
    """completion-time CDF per tool; origin vs peer bytes over time for voxd (gnuplot, PNG)."""
    name = sc["name"]
    data = os.path.join(outdir, "data")
    os.makedirs(data, exist_ok=True)
    series = []
    for r in results:
        t = sorted(r["finished"].values())
        if not t:
            continue
        path = os.path.join(data, "%s-%s-cdf.dat" % (name, r["tool"]))
        with open(path, "w") as f:
            f.write("0 0\n")
            for i, v in enumerate(t, 1):
                f.write("%.3f %.4f\n" % (v, i / r["hosts"]))
        series.append("'%s' using 1:2 with steps lw 2 title '%s'" % (path, r["tool"]))
    script = ["set terminal pngcairo size 900,540 font ',11'", "set grid", "set key bottom right"]
    if series:
        script += ["set output '%s'" % os.path.join(outdir, "%s-cdf.png" % name),
                   "set title 'bench/swarm %s: hosts done over time'" % name,
                   "set xlabel 'seconds since the host started'", "set ylabel 'share of hosts with the whole model'",
                   "set yrange [0:1.05]", "plot " + ", ".join(series)]
    vox = next((r for r in results if r["tool"] == "voxd"), None)
    if vox:
        path = os.path.join(data, "%s-voxd-bytes.dat" % name)
        with open(path, "w") as f:
            for t, tr in vox["samples"]:
                f.write("%.2f %.3f %.3f\n" % (t, tr["origin"] / MiB, tr["peers"] / MiB))
        script += ["set output '%s'" % os.path.join(outdir, "%s-voxd-bytes.png" % name),
                   "set title 'bench/swarm %s: voxd, bytes on the wire'" % name, "set xlabel 'seconds'",
                   "set ylabel 'MiB (cumulative)'", "set yrange [0:*]", "set key top left",
                   "plot '%s' using 1:2 with lines lw 2 title 'from the origin', "
                   "'%s' using 1:3 with lines lw 2 title 'between peers'" % (path, path)]
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)


def run_scenario(sc, tools, work, outdir, netem, log, make_plots, keep):
    lab = Lab(with_netem=netem)
    try:
        origin_host, tracker_host, hosts = build_network(sc, lab)
        origin = Origin(sc, os.path.join(work, "origin"), origin_host, tracker_host)
        size = origin.size
        t_star, which = lower_bound(dict(sc, files=[(p, os.path.getsize(l)) for p, l, _, _ in origin.files]))
        results = []
        for name in tools:
            log("%s: %s on %d hosts..." % (sc["name"], name, len(hosts)))
            r = run_tool(name, sc, lab, origin, tracker_host, hosts, work, t_star, log)
            t = list(r["finished"].values())
            log("  %d/%d done, max %.1f s, origin %.3f x S, %d exact" % (
                len(t), r["hosts"], max(t) if t else float("nan"), r["origin_bytes"] / size, r["exact"]))
            results.append(r)
            if not keep:
                shutil.rmtree(os.path.join(work, name), ignore_errors=True)
        lines = describe(sc, size, t_star, which, netem) + [""] + table(sc, results, size, t_star)
        if make_plots:
            plots(sc, results, outdir)
            lines += ["", "![%s CDF](%s-cdf.png) ![%s voxd bytes](%s-voxd-bytes.png)" % (
                sc["name"], sc["name"], sc["name"], sc["name"])]
        return lines, results, size
    finally:
        lab.close()


def check(sc, results, size):
    """The functional facts the test suite asserts: every copy exact, voxd's origin bytes <= 1.1 x S."""
    problems = []
    for r in results:
        if r["inexact"]:
            problems.append("%s: copies differ: %s" % (r["tool"], "; ".join(r["inexact"])))
        if len(r["finished"]) != r["hosts"]:
            problems.append("%s: %d of %d remaining hosts finished (failed: %s; timed out: %s)" % (
                r["tool"], len(r["finished"]), r["hosts"], r["failed"], r["timed_out"]))
        if r["tool"] == "voxd" and r["origin_bytes"] > 1.1 * size:
            problems.append("voxd: the origin served %.3f x the model" % (r["origin_bytes"] / size))
    return problems


# ---- helpers -----------------------------------------------------------------------------------
def require_replace(text, old, new):
    if old not in text:
        raise BenchError("tests/fixtures/nginx.conf.in no longer contains %r" % old)
    return text.replace(old, new, 1)


def wait_for(pred, timeout, what):
    try:
        wait_until(pred, timeout, what, interval=0.1)
    except AssertionError as e:  # the harness speaks to unittest; the benchmark to its user
        raise BenchError(str(e))


def same_file(path, digest):
    try:
        return sha256_file(path) == digest
    except OSError:
        return False


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_lines(path):
    return [l.strip() for l in read_text(path).splitlines() if l.strip()]


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def fmt_rate(bits):
    if not bits:
        return "unshaped"
    return "%g Mbit/s" % (bits / 1e6)


def fmt_mib(n):
    return "%.1f MiB" % (n / MiB)


def machine():
    cpu = "unknown CPU"
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return "%s, %d cores, kernel %s" % (cpu, os.cpu_count(), platform.release())


def preflight(tools, plots, scenarios):
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmark creates network namespaces")
    need = {"ip": "iproute2", "tc": "iproute2", "nginx": "nginx-light"}
    if "curl" in tools:
        need["curl"] = "curl"
    if "aria2" in tools or "aria2-hybrid" in tools:
        need["aria2c"] = "aria2"
    if plots:
        need["gnuplot"] = "gnuplot-nox"
    if any(s["loss"] or s["wan_loss"] for sc in scenarios for s in sc["sites"]):
        need["nft"] = "nftables"
    missing = ["%s (Debian package %s)" % (c, p) for c, p in need.items() if not shutil.which(c)]
    for b in (DAEMON, CLI, TRACKER):
        if not os.access(b, os.X_OK):
            missing.append("%s (build with scripts/build)" % b)
    if missing:
        raise BenchError("missing: " + ", ".join(missing))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", help="name in bench/swarm/scenarios or a YAML path "
                    "(repeatable; default: %s)" % " ".join(DEFAULT_SCENARIOS))
    ap.add_argument("--tools", help="comma-separated subset of %s (default: the scenario's list)" % ",".join(TOOLS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where tables and plots go")
    ap.add_argument("--work", help="scratch directory (default: a new one under /var/tmp, removed afterwards)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs of every host)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every copy is exact and voxd's origin bytes stay within 1.1x the model")
    a = ap.parse_args()

    # Ctrl-C, SIGTERM and SIGHUP all unwind through the finally blocks that remove the namespaces.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupted)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        scenarios = [load_scenario(s) for s in (a.scenario or DEFAULT_SCENARIOS)]
        tools_arg = a.tools.split(",") if a.tools else None
        for t in tools_arg or []:
            if t not in TOOLS:
                raise BenchError("--tools: unknown tool %r (known: %s)" % (t, ", ".join(TOOLS)))
        preflight(set(tools_arg or TOOLS), not a.no_plots, scenarios)
        netem = netem_available()
        os.makedirs(a.out, exist_ok=True)
        work = a.work or tempfile.mkdtemp(prefix="voxd-bench-swarm-", dir="/var/tmp")
        os.makedirs(work, exist_ok=True)
        os.chmod(work, 0o755)
        report = ["# bench/swarm results", "", "- command: `%s`" % " ".join(shlex.quote(x) for x in sys.argv),
                  "- machine: %s" % machine(), "- date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "- link delay: %s" % ("netem" if netem else "not applied (this kernel has no sch_netem)"), ""]
        problems = []
        try:
            for sc in scenarios:
                tools = [t for t in sc["tools"] if t in tools_arg] if tools_arg else sc["tools"]
                lines, results, size = run_scenario(sc, tools, os.path.join(work, sc["name"]), a.out, netem, log,
                                                    not a.no_plots, a.keep)
                print("\n".join(lines) + "\n", flush=True)
                report += lines + [""]
                problems += ["%s: %s" % (sc["name"], p) for p in check(sc, results, size)]
        finally:
            if not a.work and not a.keep:
                shutil.rmtree(work, ignore_errors=True)
        with open(os.path.join(a.out, "latest.md"), "w") as f:
            f.write("\n".join(report) + "\n")
        if a.check and problems:
            for p in problems:
                log("FAIL " + p)
            return 1
        return 0
    except (BenchError, RuntimeError) as e:
        log("bench/swarm: %s" % e)
        return 2
    except KeyboardInterrupt as e:
        log("bench/swarm: interrupted (%s); everything it created is removed" % (str(e) or "SIGINT"))
        return 130


if __name__ == "__main__":
    sys.exit(main())
