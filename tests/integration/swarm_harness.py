"""Several real voxd daemons sharing blobs through a real voxd-tracker, with the origin (nginx CDN and
the Hub fixture) on addresses of its own. The whole test runs inside a network namespace that has
nothing but loopback, created here and removed afterwards, so LAN discovery stays inside it."""
import json
import os
import signal
import subprocess
import sys

from harness import CLI, DAEMON, Env, git_sha1, read_text, sha256_file, wait_until
from tracker_harness import Tracker

MiB = 1 << 20
COMMIT = "5a" * 20


def run_in_private_netns():
    """Re-runs this test process inside a fresh loopback-only namespace; returns only inside it."""
    if os.environ.get("VOXD_SWARM_NETNS"):
        return
    name = "voxd-swarm-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, VOXD_SWARM_NETNS=name)
        # `python3 -m unittest ...` reports its argv[0] as "python3 -m unittest".
        argv = (["-m", "unittest"] + sys.argv[1:]) if sys.argv[0].endswith("unittest") else sys.argv
        rc = subprocess.run(["ip", "netns", "exec", name, sys.executable] + argv, env=env).returncode
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "delete", name], check=False)
    sys.exit(rc)


class Node:
    """One voxd-daemon with its own state, store, socket and peer address."""

    def __init__(self, env, name, ip, hub, tracker_url, registry_url=None, token_file=None, extra=""):
        self.env, self.name, self.ip = env, name, ip
        self.dir = os.path.join(env.dir, name)
        os.makedirs(os.path.join(self.dir, "run"), mode=0o750)
        self.socket = os.path.join(self.dir, "run", "voxd.sock")
        self.hub_cache = os.path.join(self.dir, "hub")
        self.port = 16000 + int(ip.split(".")[-1])
        lines = ["socket: %s" % self.socket, "state_dir: %s" % os.path.join(self.dir, "state"),
                 "hub_cache: %s" % self.hub_cache, "log_level: debug", "chunk_size: 1MiB",
                 "origins:"] + ["  - url: %s" % h for h in ([hub] if isinstance(hub, str) else hub)] + [
                 "tracker: %s" % tracker_url,
                 "peer:", "  listen: %s:%d" % (ip, self.port)]
        if registry_url:
            lines.append("registry: %s" % registry_url)
        if token_file:
            lines.append("registry_token_file: %s" % token_file)
        self.config = os.path.join(self.dir, "voxd.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        self.log = os.path.join(self.dir, "daemon.log")
        self.proc = None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([DAEMON, "--config", self.config], stdout=log, stderr=log)
        self.proc.graceful = signal.SIGTERM  # a clean exit runs the sanitized build's leak check
        self.env.procs.append(self.proc)
        wait_until(lambda: self.proc.poll() is not None or self.cli("status", check=False).returncode == 0, 20,
                   "daemon %s to answer" % self.name)
        if self.proc.poll() is not None:
            raise AssertionError("daemon %s exited %d:\n%s" % (self.name, self.proc.returncode, self.read_log()))
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def read_log(self):
        return read_text(self.log)

    def cli(self, *args, check=True, timeout=240):
        r = subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, VOXD_SOCKET=self.socket))
        if check and r.returncode != 0:
            raise AssertionError("%s: voxd %s exited %d\nstdout: %s\nstderr: %s\nlog:\n%s" % (
                self.name, " ".join(args), r.returncode, r.stdout, r.stderr, self.read_log()[-8000:]))
        return r

    def add(self, model, wait=True):
        if wait:
            return subprocess.Popen([CLI, "add", model], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=dict(os.environ, VOXD_SOCKET=self.socket))
        return self.cli("add", model, "--detach")

    def status(self, model):
        return json.loads(self.cli("status", model, "--json").stdout)

    def state(self, model):
        """The model's state, or None while `voxd add` has not reached the daemon yet."""
        r = self.cli("status", model, "--json", check=False)
        return json.loads(r.stdout)["state"] if r.returncode == 0 else None

    def assert_exact(self, test, repo, commit, files):
        base = os.path.join(self.hub_cache, "models--" + repo.replace("/", "--"))
        for path, local, lfs in files:
            link = os.path.join(base, "snapshots", commit, path)
            test.assertTrue(os.path.islink(link), "%s: %s" % (self.name, link))
            with open(local, "rb") as f:
                data = f.read()
            blob = sha256_file(local) if lfs else git_sha1(data)
            test.assertEqual(os.path.basename(os.readlink(link)), blob)
            with open(link, "rb") as f:
                test.assertTrue(f.read() == data, "%s: %s differs" % (self.name, path))


class SwarmEnv(Env):
    """Origin on 127.0.0.1 (Hub fixture) and 127.0.0.2 (nginx CDN), voxd-tracker on 127.0.0.3,
    daemons on 127.0.1.x."""

    def __init__(self):
        super().__init__()
        self.nodes = []

    def start_origin(self, files, repo="org/swarm", limit_rate="0"):
        self.repo = repo
        self.files = files
        self.world_file = self.world({repo: {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        self.start_nginx(limit_rate=limit_rate)
        self.hub = self.start_hub(self.world_file)
        return self.hub

    def start_tracker(self, ip="127.0.0.3", extra=()):
        self.tracker = Tracker(self.dir, ip=ip, extra=["--interval", "10"] + list(extra)).start()
        self.procs.append(self.tracker.proc)
        self.token_file = os.path.join(self.dir, "publish-token")
        return self.tracker

    def start_site(self, size, limit_rate="0"):
        """The origin serving a model whose weights are `size` bytes (each CDN connection limited to
        limit_rate bytes/s, nginx syntax), and voxd-tracker."""
        files = swarm_files(self, size)
        self.start_origin(files, limit_rate=limit_rate)
        self.start_tracker()
        return files

    def node(self, n, extra="", tracker_url=None, registry_url=None, origins=None):
        node = Node(self, "node%d" % n, "127.0.1.%d" % n, origins or self.hub,
                    tracker_url or self.tracker.url + "/announce", registry_url=registry_url,
                    token_file=self.token_file, extra=extra)
        self.nodes.append(node)
        return node

    def lfs_size(self):
        return sum(os.path.getsize(f) for _, f, lfs in self.files if lfs)

    def total_size(self):
        return sum(os.path.getsize(f) for _, f, _ in self.files)

    def dump_logs(self):
        out = []
        for n in self.nodes:
            out.append("==== %s ====\n%s" % (n.name, n.read_log()[-6000:]))
        return "\n".join(out)


def piece_size_for(size):
    """The daemon's piece-size rule (common/src/blob_torrent.cpp), for cross-checking its torrents."""
    p = 256 << 10
    while p < (8 << 20) and (size + p - 1) // p > 1024:
        p *= 2
    return p


def blob_info_hash(path, name):
    from tracker_harness import make_torrent
    return make_torrent(path, name, None, piece_size_for(os.path.getsize(path)))


class OpenTracker:
    """Debian's opentracker (built with a white list, so the info-hashes are listed up front)."""

    def __init__(self, workdir, ip, hashes):
        self.dir = os.path.join(workdir, "opentracker")
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "whitelist"), "w") as f:
            f.write("".join(h.hex() + "\n" for h in hashes))
        self.ip = ip
        self.port = 16969
        self.proc = subprocess.Popen(["opentracker", "-i", ip, "-p", str(self.port), "-P", str(self.port),
                                      "-d", self.dir, "-w", "whitelist"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket
        def up():
            try:
                with socket.create_connection((ip, self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        wait_until(up, 10, "opentracker to listen")

    @property
    def announce(self):
        return "http://%s:%d/announce" % (self.ip, self.port)


def swarm_files(env, size, seed=7):
    big = env.make_file("w/model.safetensors", size, seed=seed)
    cfg = env.make_text("w/config.json", '{"architecture": "voxcpm", "swarm": %d}\n' % seed)
    return [("model.safetensors", big, True), ("config.json", cfg, False)]
