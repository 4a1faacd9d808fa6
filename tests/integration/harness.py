"""Test harness: starts a real nginx CDN, Hub-API fixtures, the real voxd-daemon, and runs the
real voxd CLI. Everything listens on loopback addresses and lives in a private temp directory
that is removed afterwards."""
import base64
import hashlib
import json
import os
import re
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
BUILD = os.environ.get("VOXD_BUILD_DIR", os.path.join(os.path.dirname(os.path.dirname(HERE)), "build"))
DAEMON = os.path.join(BUILD, "daemon", "voxd-daemon")
CLI = os.path.join(BUILD, "cli", "voxd")
SECRET = "voxd-test-secret"


# tests/fixtures/nginx.conf.in's log_format voxd.
CDN_LOG_LINE = re.compile(r'^(\S+) (\d+) (\d+) "([^"]*)" "([^"]*)" (\S+) (\S+)$')


def free_port(ip):
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def read_text(path):
    """A log's text so far; "" before the file exists."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="voxd-test-")
        os.chmod(self.dir, 0o755)  # other users (the permission test) may traverse, not list sockets
        self.procs = []
        self.daemon = None
        self.nginx_port = None
        self.files = {}
        os.makedirs(os.path.join(self.dir, "cdnroot", "cdn"))
        os.makedirs(os.path.join(self.dir, "cdnroot", "corrupt"))
        os.makedirs(os.path.join(self.dir, "cdnroot", "plain"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.run_dir = os.path.join(self.dir, "run")
        os.makedirs(self.run_dir, mode=0o750)
        os.chmod(self.run_dir, 0o750)
        self.socket = os.path.join(self.run_dir, "voxd.sock")
        self.state_dir = os.path.join(self.dir, "state")
        self.hub_cache = os.path.join(self.dir, "hub")

    # ---- data ------------------------------------------------------------------------------
    def make_file(self, name, size, seed=1):
        path = os.path.join(self.dir, "data", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rnd = random.Random(seed)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(rnd.randbytes(n))
                left -= n
        return path

    def make_text(self, name, text):
        path = os.path.join(self.dir, "data", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text.encode())
        return path

    def world(self, repos):
        """repos: {"org/name": {"refs": {...}, "commits": {commit: [(path, file, lfs)]}}}"""
        spec = {"repos": {}}
        for repo, r in repos.items():
            commits = {}
            for c, files in r["commits"].items():
                commits[c] = [dict(path=p, file=f, lfs=lfs) for p, f, lfs in files]
                for _, f, lfs in files:
                    if lfs:
                        h = sha256_file(f)
                        dst = os.path.join(self.dir, "cdnroot", "cdn", h)
                        if not os.path.exists(dst):
                            os.link(f, dst)
                        bad = os.path.join(self.dir, "cdnroot", "corrupt", h)
                        if not os.path.exists(bad):
                            shutil.copyfile(f, bad)
                            with open(bad, "r+b") as fh:
                                fh.seek(os.path.getsize(bad) // 2)
                                b = fh.read(1)
                                fh.seek(-1, 1)
                                fh.write(bytes([b[0] ^ 0xFF]))
            spec["repos"][repo] = dict(refs=r.get("refs", {}), commits=commits)
        path = os.path.join(self.dir, "world.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        return path

    # ---- servers ---------------------------------------------------------------------------
    def start_nginx(self, ip="127.0.0.2", limit_rate="0"):
        self.nginx_ip = ip
        self.nginx_port = free_port(ip)
        with open(os.path.join(FIXTURES, "nginx.conf.in")) as f:
            conf = f.read()
        conf = (conf.replace("@DIR@", self.dir).replace("@LISTEN@", "%s:%d" % (ip, self.nginx_port))
                .replace("@ROOT@", os.path.join(self.dir, "cdnroot")).replace("@SECRET@", SECRET)
                .replace("@LIMIT_RATE@", limit_rate))
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        p = subprocess.Popen(["nginx", "-c", path, "-e", os.path.join(self.dir, "nginx-error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.graceful = signal.SIGTERM  # SIGKILL on the master would orphan its workers
        self.procs.append(p)
        wait_until(lambda: self._connectable(ip, self.nginx_port), 10, "nginx to listen")
        return "http://%s:%d" % (ip, self.nginx_port)

    def start_hub(self, world, ip="127.0.0.1", cdn_prefix="cdn", token=None, page_size=3, url_ttl=3600,
                  corrupt=False, fail_all=False, shift_ranges=False, name="hub", port=0):
        ready = os.path.join(self.dir, name + ".port")
        args = ["python3", os.path.join(FIXTURES, "hub_fixture.py"), "--listen", "%s:%d" % (ip, port), "--world", world,
                "--cdn-url", "http://%s:%d" % (self.nginx_ip, self.nginx_port), "--cdn-prefix", cdn_prefix,
                "--secret", SECRET, "--page-size", str(page_size), "--url-ttl", str(url_ttl),
                "--log", os.path.join(self.dir, name + ".log"), "--ready-file", ready]
        if token:
            args += ["--token", token]
        if corrupt:
            args.append("--corrupt")
        if fail_all:
            args.append("--fail-all")
        if shift_ranges:
            args.append("--shift-ranges")
        with open(os.path.join(self.dir, name + ".err"), "w") as err:
            p = subprocess.Popen(args, stderr=err)
        self.procs.append(p)
        wait_until(lambda: os.path.exists(ready), 30, "the hub fixture %s" % name)
        with open(ready) as f:
            return "http://%s:%s" % (ip, f.read().strip())

    def _connectable(self, ip, port):
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return True
        except OSError:
            return False

    def write_config(self, origins, extra=""):
        lines = ["socket: %s" % self.socket, "state_dir: %s" % self.state_dir, "hub_cache: %s" % self.hub_cache,
                 "log_level: debug", "origins:"]
        for o in origins:
            if isinstance(o, str):
                lines.append("  - url: %s" % o)
            else:
                lines.append("  - url: %s" % o["url"])
                if o.get("token_file"):
                    lines.append("    token_file: %s" % o["token_file"])
        path = os.path.join(self.dir, "voxd.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        return path

    def start_daemon(self, config, env=None):
        e = dict(os.environ)
        e.pop("HF_TOKEN", None)
        e.update(env or {})
        with open(os.path.join(self.dir, "daemon.log"), "a") as log:
            self.daemon = subprocess.Popen([DAEMON, "--config", config], stdout=log, stderr=log, env=e)
        self.daemon.graceful = signal.SIGTERM  # a clean exit runs the sanitized build's leak check
        self.procs.append(self.daemon)
        wait_until(lambda: self.daemon.poll() is not None or self.cli("status", check=False).returncode == 0, 20,
                   "the daemon to answer")
        if self.daemon.poll() is not None:
            raise AssertionError("daemon exited with %d:\n%s" % (self.daemon.returncode, self.daemon_log()))
        return self.daemon

    def stop_daemon(self, sig=signal.SIGTERM, timeout=10):
        self.daemon.send_signal(sig)
        self.daemon.wait(timeout=timeout)
        return self.daemon.returncode

    def daemon_log(self):
        return read_text(os.path.join(self.dir, "daemon.log"))[-6000:]

    def cli(self, *args, check=True, timeout=120, env=None, user=None):
        e = dict(os.environ, VOXD_SOCKET=self.socket)
        e.update(env or {})
        cmd = [CLI] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError("voxd %s exited %d\nstdout: %s\nstderr: %s\ndaemon log:\n%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr, self.daemon_log()))
        return r

    def status(self, model):
        return json.loads(self.cli("status", model, "--json").stdout)

    # ---- observations ----------------------------------------------------------------------
    def cdn_log(self):
        rows = []
        path = os.path.join(self.dir, "cdn-access.log")
        if not os.path.exists(path):
            return rows
        with open(path) as f:
            for line in f:
                m = CDN_LOG_LINE.match(line)
                uri, status, nbytes, rng, auth, end, took = m.groups()
                rows.append(dict(uri=uri, status=int(status), bytes=int(nbytes), range=rng, auth=auth,
                                 start=float(end) - float(took), end=float(end)))
        return rows

    def cdn_bytes(self, prefix="/cdn/"):
        return sum(r["bytes"] for r in self.cdn_log() if r["uri"].startswith(prefix))

    def hub_log(self, name="hub"):
        path = os.path.join(self.dir, name + ".log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(l) for l in f]

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(getattr(p, "graceful", signal.SIGKILL))
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        reports = sanitizer_reports(self.dir)
        if os.environ.get("VOXD_TEST_KEEP") or reports:  # logs and stores, for a post-mortem
            print("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer reports (scripts/test --sanitize):\n" + "\n".join(reports))


# What AddressSanitizer, LeakSanitizer and UBSan print; daemons stopped with SIGTERM run the leak
# check at exit. A plain build prints none of it.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


def sanitizer_reports(top):
    """Every log under `top` with a sanitizer's report in it, with the report's first lines."""
    found = []
    for root, _dirs, names in os.walk(top):
        for n in names:
            if not n.endswith(".log"):
                continue
            text = read_text(os.path.join(root, n))
            at = min((text.find(m) for m in SANITIZER_MARKS if m in text), default=-1)
            if at >= 0:
                found.append("%s:\n%s" % (os.path.join(root, n), text[max(0, at - 200):at + 3000]))
    return found


class VoxdTest(unittest.TestCase):
    def setUp(self):
        self.env = Env()
        self.addCleanup(self.env.close)
