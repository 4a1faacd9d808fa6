"""Integration tests for the core issue: real nginx CDN, Hub fixture, daemon and CLI."""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

from harness import DAEMON, Env, VoxdTest, git_sha1, sha256_file, wait_until

COMMIT = "c0ffee" + "0" * 34
COMMIT2 = "beef" + "1" * 36
MiB = 1 << 20


def model_world(env, big_size=24 * MiB, repo="openbmb/VoxCPM1.5", seed=1, extra=()):
    big = env.make_file("%s/model.safetensors" % repo, big_size, seed=seed)
    vae = env.make_file("%s/nested/dir/audiovae.pth" % repo, 2 * MiB + 123, seed=seed + 100)
    cfg = env.make_text("%s/config.json" % repo, '{"architecture": "voxcpm", "seed": %d}\n' % seed)
    tok = env.make_text("%s/tokenizer_config.json" % repo, "{}\n" * 500)
    empty = env.make_text("%s/empty.txt" % repo, "")
    files = [("model.safetensors", big, True), ("nested/dir/audiovae.pth", vae, True), ("config.json", cfg, False),
             ("tokenizer/tokenizer_config.json", tok, False), ("empty.txt", empty, False)] + list(extra)
    return files


class CoreTest(VoxdTest):
    def start(self, repos=None, hub_kwargs=None, extra_config="", origins=None, token=None, limit_rate="0",
              chunk_size="1MiB"):
        env = self.env
        if repos is None:
            repos = {"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: model_world(env)}}}
        self.world = env.world(repos)
        env.start_nginx(limit_rate=limit_rate)
        self.hub = env.start_hub(self.world, token=token, **(hub_kwargs or {}))
        conf = env.write_config(origins or [self.hub], "chunk_size: %s\n" % chunk_size + extra_config)
        env.start_daemon(conf)
        return repos

    def assert_exact(self, repo, commit, files, revision="main"):
        base = os.path.join(self.env.hub_cache, "models--" + repo.replace("/", "--"))
        for path, local, lfs in files:
            link = os.path.join(base, "snapshots", commit, path)
            self.assertTrue(os.path.islink(link), link)
            target = os.readlink(link)
            self.assertFalse(os.path.isabs(target), target)
            with open(local, "rb") as f:
                data = f.read()
            blob = sha256_file(local) if lfs else git_sha1(data)
            self.assertEqual(os.path.basename(target), blob)
            self.assertEqual(os.path.realpath(link), os.path.join(os.path.realpath(base), "blobs", blob))
            with open(link, "rb") as f:
                self.assertEqual(f.read(), data, path)
        if revision != commit:
            with open(os.path.join(base, "refs", revision)) as f:
                self.assertEqual(f.read(), commit)  # exactly the commit, no newline

    # ------------------------------------------------------------------------------------------
    def test_nested_paths_and_cache_layout(self):
        env = self.env
        files = model_world(env)
        self.world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        hub = env.start_hub(self.world, token="hf_secret", page_size=2)
        token_file = env.make_text("token", "hf_secret\n")
        env.start_daemon(env.write_config([{"url": hub, "token_file": token_file}], "chunk_size: 1MiB\n"))
        r = env.cli("add", "voxcpm-1.5")
        self.assertIn("complete", r.stdout)
        self.assertIn("origin", r.stdout)  # plain progress lines when stdout is not a terminal
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        st = env.status("voxcpm-1.5")
        for key in ("state", "bytes_total", "bytes_done", "bytes_from_origin", "bytes_from_peers", "bytes_uploaded", "path"):
            self.assertIn(key, st)
        self.assertEqual(st["state"], "complete")
        total = sum(os.path.getsize(f) for _, f, _ in files)
        self.assertEqual(st["bytes_total"], total)
        self.assertEqual(st["bytes_done"], total)
        self.assertGreaterEqual(st["bytes_from_origin"], total)
        self.assertEqual(env.cli("path", "voxcpm-1.5").stdout.strip(), st["path"])
        # The token went to the origin on every request and never to the CDN.
        hub_requests = env.hub_log()
        self.assertTrue(hub_requests)
        self.assertTrue(all(r["auth"] == "Bearer hf_secret" for r in hub_requests))
        self.assertTrue(all(r["auth"] in ("", "-") for r in env.cdn_log()))
        # Tree pagination was followed (page size 2, 9 entries).
        self.assertGreaterEqual(len([r for r in hub_requests if "/tree/" in r["path"]]), 4)
        # Partial data never lives under blobs/ and nothing is left in the partial dir.
        self.assertEqual(os.listdir(os.path.join(env.state_dir, "partial")), [])
        ls = json.loads(env.cli("ls", "--json").stdout)
        self.assertEqual([m["model"] for m in ls["models"]], ["openbmb/VoxCPM1.5@main"])

    def test_dead_first_origin(self):
        dead = "http://127.0.0.1:%d" % self._closed_port()
        self.env.start_nginx()
        files = model_world(self.env)
        world = self.env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        hub = self.env.start_hub(world)
        self.env.start_daemon(self.env.write_config([dead, hub], "chunk_size: 1MiB\n"))
        self.env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        st = json.loads(self.env.cli("status", "--json").stdout)
        self.assertGreaterEqual(st["origins"][0]["failures"], 1)
        self.assertEqual(st["origins"][0]["bytes"], 0)
        self.assertGreater(st["origins"][1]["bytes"], 0)

    def _closed_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def test_corrupt_origin_falls_back(self):
        env = self.env
        files = model_world(env)
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        bad = env.start_hub(world, ip="127.0.0.1", cdn_prefix="corrupt", corrupt=True, name="bad")
        good = env.start_hub(world, ip="127.0.0.3", name="good")
        env.start_daemon(env.write_config([bad, good], "chunk_size: 1MiB\n"))
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        st = json.loads(env.cli("status", "--json").stdout)
        self.assertGreaterEqual(st["origins"][0]["corrupt"], 1)
        self.assertIn("does not match", env.daemon_log())
        self.assertGreater(len(env.hub_log("good")), 0)

    def test_wrong_content_range_is_refused_and_not_kept(self):
        env = self.env
        big_text = env.make_file("openbmb/VoxCPM1.5/vocab.bin", 900_000, seed=9)  # a non-LFS file, 4 chunks
        files = [("vocab.bin", big_text, False), ("config.json", env.make_text("c.json", "{}\n"), False)]
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        bad = env.start_hub(world, ip="127.0.0.1", shift_ranges=True, name="bad")
        good = env.start_hub(world, ip="127.0.0.3", name="good")
        env.start_daemon(env.write_config([bad, good], "chunk_size: 256KiB\n"))
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        self.assertIn("asked for bytes", env.daemon_log())
        # Bytes from the wrong ranges were not kept: the good origin sent the file once, not twice.
        served = sum(r["bytes"] for r in env.hub_log("good") if r["path"].endswith("/vocab.bin"))
        self.assertLessEqual(served, os.path.getsize(big_text))
        self.assertNotIn("does not match", env.daemon_log())

    def test_corrupt_everywhere_fails_with_file_and_origins(self):
        env = self.env
        files = model_world(env, big_size=3 * MiB)
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        bad = env.start_hub(world, cdn_prefix="corrupt", corrupt=True)
        env.start_daemon(env.write_config([bad], "chunk_size: 1MiB\nmax_attempts_per_origin: 2\n"))
        t0 = time.monotonic()
        r = env.cli("add", "voxcpm-1.5", check=False)
        self.assertEqual(r.returncode, 6, r.stderr)  # download_failed
        self.assertLess(time.monotonic() - t0, 60)
        line = r.stderr.strip()
        self.assertEqual(len(line.splitlines()), 1, line)
        self.assertIn("no origin could supply a verified copy", line)
        self.assertIn(bad, line)
        self.assertRegex(line, r"file '(model\.safetensors|nested/dir/audiovae\.pth|config\.json|tokenizer/tokenizer_config\.json)'")
        self.assertEqual(env.status("voxcpm-1.5")["state"], "error")
        blobs = os.path.join(env.hub_cache, "models--openbmb--VoxCPM1.5", "blobs")
        stored = os.listdir(blobs) if os.path.isdir(blobs) else []
        self.assertNotIn(sha256_file(files[0][1]), stored)  # corrupt data never enters the store
        # Each origin is asked a bounded number of times.
        cdn = [r for r in env.cdn_log() if r["uri"].endswith(sha256_file(files[0][1]))]
        self.assertLessEqual(sum(r["bytes"] for r in cdn), 2 * os.path.getsize(files[0][1]))

    def test_kill9_resume(self):
        env = self.env
        size = 64 * MiB
        files = model_world(env, big_size=size)
        self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}},
                   extra_config="bandwidth:\n  download_cap: 6MB/s\n")
        env.cli("add", "voxcpm-1.5", "--detach")
        wait_until(lambda: env.status("voxcpm-1.5")["bytes_done"] > size * 0.4, 60, "40% of the download")
        env.daemon.kill()
        env.daemon.wait()
        env.start_daemon(os.path.join(env.dir, "voxd.yaml"))
        env.cli("limit", "download", "off")
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        served = env.cdn_bytes()
        lfs_total = sum(os.path.getsize(f) for _, f, lfs in files if lfs)
        print("kill -9 resume: the CDN served %d bytes for %d (%.3fx)" % (served, lfs_total, served / lfs_total))
        self.assertLessEqual(served, lfs_total * 1.05, "origin served %d bytes for %d" % (served, lfs_total))
        self.assertIn("already on disk", env.daemon_log())

    def test_every_connection_stays_busy_to_the_end(self):
        # A far mirror that gives each connection 256 KiB/s (nginx lets each request send about a
        # second's worth at once); default request sizes. Until the last few percent of the model,
        # connections_per_origin (8) ranges are in flight at once. The last ones are the ranges no
        # longer worth a cut: about 8 connections x 2 x min_split_size (here 4 MiB of 34, 12%) at
        # most; in practice about half that.
        env = self.env
        files = model_world(env, big_size=32 * MiB)
        self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}},
                   limit_rate="256k", chunk_size="16MiB")
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        rows = [r for r in env.cdn_log() if r["status"] == 206 and r["uri"].startswith("/cdn/")]
        total = sum(r["bytes"] for r in rows)
        lfs = sum(os.path.getsize(f) for _, f, lfs in files if lfs)
        self.assertLessEqual(total, lfs * 1.02)  # cuts lose little
        t0, t1 = min(r["start"] for r in rows), max(r["end"] for r in rows)

        def done_by(t):  # bytes served by time t, each request at its own constant rate
            return sum(r["bytes"] * min(1.0, max(0.0, (t - r["start"]) / max(r["end"] - r["start"], 1e-3)))
                       for r in rows)

        samples = [t0 + (t1 - t0) * i / 400 for i in range(401)]
        window = [t for t in samples if 0.03 * total <= done_by(t) <= 0.92 * total]
        # A connection counts as busy for 50 ms after its request ends: the next request on it is
        # the daemon's answer to that end, one round trip later.
        busy = [sum(1 for r in rows if r["start"] <= t < r["end"] + 0.05) for t in window]
        print("%d requests; in flight between 3%% and 92%% of the bytes: %d to %d" % (len(rows), min(busy), max(busy)))
        self.assertGreater(len(window), 100)
        if min(busy) < 8:
            print([(round(t - t0, 2), b, round(done_by(t) / total, 3)) for t, b in zip(window, busy) if b < 8])
        self.assertEqual(min(busy), 8)

    def test_shared_blob_fetched_once(self):
        env = self.env
        files_a = model_world(env, repo="org/a")
        shared = files_a[0]
        cfg_b = env.make_text("org/b/config.json", '{"b": 1}\n')
        files_b = [shared, ("config.json", cfg_b, False)]
        files_c = [shared, ("other.json", env.make_text("org/c/x", "c\n"), False)]
        self.start(repos={"org/a": {"refs": {"main": COMMIT}, "commits": {COMMIT: files_a}},
                          "org/b": {"refs": {"main": COMMIT2}, "commits": {COMMIT2: files_b}},
                          "org/c": {"refs": {"main": COMMIT2}, "commits": {COMMIT2: files_c}}})
        env.cli("add", "org/a")
        env.cli("add", "org/b")
        self.assert_exact("org/b", COMMIT2, files_b)
        blob = sha256_file(shared[1])
        self.assertEqual(sum(r["bytes"] for r in env.cdn_log() if r["uri"].endswith(blob)), os.path.getsize(shared[1]))
        # Two more models at once: nothing more is fetched for the shared blob.
        env.cli("rm", "org/a")
        env.cli("add", "org/c", "--detach")
        env.cli("add", "org/a")
        env.cli("add", "org/c")
        self.assert_exact("org/a", COMMIT, files_a)
        self.assert_exact("org/c", COMMIT2, files_c)
        self.assertEqual(sum(r["bytes"] for r in env.cdn_log() if r["uri"].endswith(blob)), os.path.getsize(shared[1]))

    def test_bad_config(self):
        env = self.env
        path = os.path.join(env.dir, "bad.yaml")
        with open(path, "w") as f:
            f.write("max_active: lots\norigins:\n  - url: ftp://mirror\nbandwidth:\n  download_cap: 10 parsecs\nsocket_path: /x\n")
        r = subprocess.run([DAEMON, "--config", path, "--check-config"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 10)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 4, r.stderr)
        self.assertTrue(lines[0].startswith(path + ":1:13: max_active: 'lots' is not an integer"), lines[0])
        self.assertIn(":3:", lines[1])
        self.assertIn("ftp://mirror", lines[1])
        self.assertTrue(lines[2].startswith(path + ":5:17: bandwidth.download_cap:"), lines[2])
        self.assertTrue(lines[3].startswith(path + ":6:1: socket_path: unknown key"), lines[3])
        # The daemon refuses to start on it, with the same messages.
        r2 = subprocess.run([DAEMON, "--config", path], capture_output=True, text=True, timeout=10)
        self.assertEqual(r2.returncode, 10)
        self.assertIn("socket_path: unknown key", r2.stderr)
        good = env.write_config(["http://127.0.0.1:1"])
        r3 = subprocess.run([DAEMON, "--config", good, "--check-config"], capture_output=True, text=True)
        self.assertEqual(r3.returncode, 0, r3.stderr)
        r4 = subprocess.run([DAEMON, "--config", os.path.join(env.dir, "missing.yaml"), "--check-config"],
                            capture_output=True, text=True)
        self.assertEqual(r4.returncode, 10)
        self.assertIn("missing.yaml", r4.stderr)

    def test_unknown_model(self):
        self.start()
        r = self.env.cli("add", "voxcpm15", check=False)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("unknown model 'voxcpm15'", r.stderr)
        self.assertIn("voxcpm-1.5", r.stderr)
        r2 = self.env.cli("add", "nobody/nothing", check=False)
        self.assertEqual(r2.returncode, 6, r2.stderr)
        self.assertIn("nobody/nothing@main", r2.stderr)
        self.assertIn("HTTP 401", r2.stderr)
        r3 = self.env.cli("status", "not-added", check=False)
        self.assertEqual(r3.returncode, 5)
        r4 = self.env.cli("frobnicate", check=False)
        self.assertEqual(r4.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r4.stderr)
        self.assertEqual(self.env.cli("status").returncode, 0)

    def test_socket_permission(self):
        self.start()
        r = self.env.cli("status", check=False, user=65534)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertEqual(os.stat(self.env.socket).st_mode & 0o777, 0o660)
        # A socket directory other users can enter is refused at start.
        open_dir = os.path.join(self.env.dir, "open")
        os.makedirs(open_dir, mode=0o755)
        os.chmod(open_dir, 0o755)
        conf = os.path.join(self.env.dir, "open.yaml")
        with open(conf, "w") as f:
            f.write("socket: %s/voxd.sock\nstate_dir: %s/s2\norigins: [%s]\n" % (open_dir, self.env.dir, self.hub))
        r2 = subprocess.run([DAEMON, "--config", conf], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r2.returncode, 0)
        self.assertIn("accessible to other users", r2.stderr)
        # The mutation by our uid was logged with the credentials.
        self.env.cli("limit", "download", "50MB/s")
        self.assertRegex(self.env.daemon_log(), r"limit .* by uid=0 gid=0 pid=\d+")

    def test_control_socket_survives_garbage(self):
        self.start()

        def exchange(payload):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(self.env.socket)
                s.sendall(payload)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                return [json.loads(l) for l in buf.decode().splitlines()]

        self.assertEqual(exchange(b"this is not json\n")[0]["error"]["code"], -32700)
        self.assertEqual(exchange(b'{"jsonrpc":"2.0","id":1,"method":"format_disk"}\n')[0]["error"]["code"], -32601)
        self.assertEqual(exchange(b'{"jsonrpc":"2.0","id":2,"method":"add","params":{}}\n')[0]["error"]["code"], 7)
        big = exchange(b'{"jsonrpc":"2.0","id":3,"method":"status","params":{"x":"' + b"a" * 200000 + b'"}}\n')
        self.assertEqual(big[0]["error"]["code"], -32600)
        self.assertIn("exceeds", big[0]["error"]["message"])
        ok = exchange(b'{"jsonrpc":"2.0","id":4,"method":"status"}\n')
        self.assertEqual(ok[0]["result"]["protocol_version"], "1.3")
        # A client that connects and vanishes mid-message does not disturb others.
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.env.socket)
        s.sendall(b'{"jsonrpc":"2.0",')
        s.close()
        self.assertEqual(self.env.cli("status").returncode, 0)
        self.assertIsNone(self.env.daemon.poll())

    def test_expired_signed_url(self):
        env = self.env
        files = model_world(env, big_size=16 * MiB)
        self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}},
                   hub_kwargs={"url_ttl": 1}, extra_config="bandwidth:\n  download_cap: 4MB/s\n")
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        self.assertTrue(any(r["status"] == 403 for r in env.cdn_log()), "the signed URL never expired")
        resolves = [r for r in env.hub_log() if r["path"].endswith("/model.safetensors")]
        self.assertGreater(len(resolves), 1)
        self.assertIn("resolving the file again", env.daemon_log())

    def test_queue_survives_restart(self):
        env = self.env
        files_a = model_world(env, repo="org/a", big_size=8 * MiB, seed=3)
        files_b = model_world(env, repo="org/b", big_size=8 * MiB, seed=4)
        self.start(repos={"org/a": {"refs": {"main": COMMIT}, "commits": {COMMIT: files_a}},
                          "org/b": {"refs": {"main": COMMIT2}, "commits": {COMMIT2: files_b}}},
                   extra_config="max_active: 1\nbandwidth:\n  download_cap: 3MB/s\n")
        env.cli("add", "org/a", "--detach")
        env.cli("add", "org/b", "--detach")
        wait_until(lambda: env.status("org/a")["state"] == "downloading", 20, "org/a to start")
        self.assertEqual(env.status("org/b")["state"], "queued")  # max_active: 1
        t0 = time.monotonic()
        self.assertEqual(env.stop_daemon(signal.SIGTERM), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("stopped", env.daemon_log())
        env.start_daemon(os.path.join(env.dir, "voxd.yaml"))
        env.cli("limit", "download", "off")
        env.cli("add", "org/b")
        env.cli("add", "org/a")
        self.assert_exact("org/a", COMMIT, files_a)
        self.assert_exact("org/b", COMMIT2, files_b)

    def test_download_cap_is_honoured(self):
        env = self.env
        files = model_world(env, big_size=12 * MiB)
        self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}},
                   extra_config="bandwidth:\n  download_cap: 4MB/s\n")
        total = sum(os.path.getsize(f) for _, f, _ in files)
        t0 = time.monotonic()
        env.cli("add", "voxcpm-1.5")
        elapsed = time.monotonic() - t0
        # A lower bound only (a slow machine can only make it slower): the cap holds within 50%.
        self.assertGreater(elapsed, total / (4e6 * 1.5), "%.1f MB in %.2f s" % (total / 1e6, elapsed))
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)

    def test_sighup_reloads_caps_and_origins_and_refuses_a_bad_file(self):
        env = self.env
        files = model_world(env, big_size=32 * MiB)
        repos = self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}},
                           extra_config="bandwidth:\n  download_cap: 4MB/s\n  upload_cap: 30%\n")
        hub2 = env.start_hub(env.world(repos), name="hub2")
        env.cli("add", "voxcpm-1.5", "--detach")
        wait_until(lambda: env.status("voxcpm-1.5")["bytes_done"] > 2 * MiB, 30, "some progress")
        conf = os.path.join(env.dir, "voxd.yaml")
        with open(conf) as f:
            text = f.read()
        text = text.replace("upload_cap: 30%", "upload_cap: 20MB/s").replace("download_cap: 4MB/s", "download_cap: 3MB/s")
        text = text.replace("origins:\n  - url: %s\n" % self.hub, "origins:\n  - url: %s\n  - url: %s\n" % (self.hub, hub2))
        with open(conf, "w") as f:
            f.write(text)
        env.daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in env.daemon_log(), 10, "the reload")
        limits = env.cli("limit").stdout
        self.assertIn("upload:   20.0 MB/s", limits)
        self.assertIn("download: 3.0 MB/s", limits)
        st = json.loads(env.cli("status", "--json").stdout)
        self.assertEqual([o["url"] for o in st["origins"]], [self.hub, hub2])
        # The transfer kept going through the reload.
        m = st["models"][0]
        self.assertEqual(m["state"], "downloading")
        before = m["bytes_done"]
        wait_until(lambda: env.status("voxcpm-1.5")["bytes_done"] > before, 10, "more progress")
        self.assertRegex(env.daemon_log(), r"reloaded .*origins.*bandwidth.download_cap.*bandwidth.upload_cap")
        # A file that does not validate is refused and logged; the running values stay.
        with open(conf, "w") as f:
            f.write(text + "max_active: lots\n")
        env.daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in env.daemon_log(), 10, "the refusal")
        self.assertIn("voxd.yaml:", env.daemon_log())
        self.assertIn("max_active: 'lots' is not an integer", env.daemon_log())
        self.assertIn("upload:   20.0 MB/s", env.cli("limit").stdout)
        env.cli("limit", "download", "off")
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)

    def test_pause_resume_rm_limit(self):
        env = self.env
        files = model_world(env, big_size=16 * MiB)
        self.start(repos={"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        self.assertIn("download: off", env.cli("limit").stdout)
        env.cli("limit", "download", "4MB/s")
        self.assertIn("download: 4.0 MB/s", env.cli("limit").stdout)
        bad = env.cli("limit", "download", "fast", check=False)
        self.assertEqual(bad.returncode, 7)
        self.assertIn("'fast'", bad.stderr)
        env.cli("add", "voxcpm-1.5", "--detach")
        wait_until(lambda: env.status("voxcpm-1.5")["bytes_done"] > 2 * MiB, 30, "some progress")
        env.cli("pause", "voxcpm-1.5")
        self.assertEqual(env.status("voxcpm-1.5")["state"], "paused")
        time.sleep(0.5)
        before = env.status("voxcpm-1.5")["bytes_done"]
        time.sleep(1.0)
        self.assertEqual(env.status("voxcpm-1.5")["bytes_done"], before)
        # The cap persists across a restart.
        env.stop_daemon()
        env.start_daemon(os.path.join(env.dir, "voxd.yaml"))
        self.assertIn("download: 4.0 MB/s", env.cli("limit").stdout)
        self.assertEqual(env.status("voxcpm-1.5")["state"], "paused")
        env.cli("limit", "download", "off")
        env.cli("resume", "voxcpm-1.5")
        env.cli("add", "voxcpm-1.5")
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        path = env.cli("path", "voxcpm-1.5").stdout.strip()
        self.assertTrue(os.path.isdir(path))
        env.cli("rm", "voxcpm-1.5")
        self.assertFalse(os.path.exists(os.path.join(env.hub_cache, "models--openbmb--VoxCPM1.5")))
        self.assertEqual(env.cli("path", "voxcpm-1.5", check=False).returncode, 5)


if __name__ == "__main__":
    unittest.main()
