"""Reliability as a fleet sees it (issue: transient outages never fail a download, a store within
its disk budget): origins out of reach and a full disk make a model wait, never fail or leave a
half-written blob; `voxd add --timeout` bounds the wait; `voxd gc` evicts what is not used."""
import json
import os
import subprocess
import time
import unittest

import test_core
from harness import CLI, VoxdTest, free_port, git_sha1, sha256_file, wait_until
from test_core import COMMIT, model_world


def state(env, model="voxcpm-1.5"):
    """The model's state, or None while `voxd add` has not reached the daemon yet."""
    r = env.cli("status", model, "--json", check=False)
    return json.loads(r.stdout)["state"] if r.returncode == 0 else None


class ReliabilityTest(VoxdTest):
    assert_exact = test_core.CoreTest.assert_exact

    def test_an_origin_out_of_reach_for_30_s_then_back(self):
        env = self.env
        files = model_world(env, big_size=8 << 20)
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        port = free_port("127.0.0.1")
        origin = "http://127.0.0.1:%d" % port  # nothing listens there yet
        env.start_daemon(env.write_config([origin], "chunk_size: 1MiB\n"))
        t0 = time.monotonic()
        add = subprocess.Popen([CLI, "add", "voxcpm-1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, VOXD_SOCKET=env.socket))
        wait_until(lambda: state(env) == "waiting", 30, "the model to wait")
        st = env.status("voxcpm-1.5")
        self.assertIn(origin, st["reason"])
        self.assertGreater(st["retry_in_seconds"], 0)
        self.assertNotIn("error", st)
        self.assertIsNone(add.poll())  # `voxd add` keeps waiting
        time.sleep(max(0, 30 - (time.monotonic() - t0)))
        self.assertIsNone(add.poll())
        hub = env.start_hub(world, port=port)
        self.assertEqual(hub, origin)
        out, err = add.communicate(timeout=120)
        self.assertEqual(add.returncode, 0, "%s\n%s\n%s" % (out, err, env.daemon_log()))
        self.assertIn("waiting: ", out)  # the reason was shown while it waited
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        size = sum(os.path.getsize(f) for _, f, _ in files)
        served = env.cdn_bytes() + sum(r["bytes"] for r in env.hub_log() if "/resolve/" in r["path"])
        self.assertLessEqual(served, 1.05 * size)
        self.assertEqual(env.status("voxcpm-1.5")["state"], "complete")

    def test_add_timeout_against_an_unreachable_origin(self):
        env = self.env
        origin = "http://127.0.0.1:%d" % free_port("127.0.0.1")
        env.start_daemon(env.write_config([origin]))
        t0 = time.monotonic()
        r = env.cli("add", "voxcpm-1.5", "--timeout", "5s", check=False)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 13, r.stderr)  # timed out, as docs/control-protocol.md says
        self.assertGreaterEqual(took, 5)
        self.assertLess(took, 15)
        self.assertIn("not complete after 5s", r.stderr)
        self.assertIn("the daemon goes on with it", r.stderr)
        # The daemon keeps the model and goes on trying.
        self.assertIn(env.status("voxcpm-1.5")["state"], ("resolving", "waiting"))
        bad = env.cli("add", "voxcpm-1.5", "--timeout", "soon", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("'soon'", bad.stderr)

    def small_store(self):
        """A 16 MiB file system (tmpfs) holding the daemon's state_dir and hub_cache."""
        env = self.env
        small = os.path.join(env.dir, "small")
        os.makedirs(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        env.state_dir, env.hub_cache = os.path.join(small, "state"), os.path.join(small, "hub")
        return small

    def test_a_store_too_small_waits_for_room_then_completes(self):
        env = self.env
        small = self.small_store()
        filler = os.path.join(small, "filler")
        with open(filler, "wb") as f:
            f.write(os.urandom(8 << 20))
        files = model_world(env, big_size=8 << 20)  # about 10 MiB in all
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        hub = env.start_hub(world)
        env.start_daemon(env.write_config([hub], "chunk_size: 1MiB\n"))
        add = subprocess.Popen([CLI, "add", "voxcpm-1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, VOXD_SOCKET=env.socket))
        wait_until(lambda: state(env) == "waiting", 30, "the model to wait for room")
        reason = env.status("voxcpm-1.5")["reason"]
        self.assertRegex(reason, r"^disk full: need 10\.\d MiB, have [\d.]+ MiB free on ")
        blobs = os.path.join(env.hub_cache, "models--openbmb--VoxCPM1.5", "blobs")
        self.assertEqual(os.listdir(blobs) if os.path.isdir(blobs) else [], [])  # nothing half-written
        self.assertIsNone(add.poll())
        os.unlink(filler)
        out, err = add.communicate(timeout=120)
        self.assertEqual(add.returncode, 0, "%s\n%s\n%s" % (out, err, env.daemon_log()))
        self.assertIn("disk full", out)
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)

    def test_a_disk_filling_up_mid_download_pauses_the_model_until_there_is_room(self):
        env = self.env
        small = self.small_store()
        files = model_world(env, big_size=8 << 20)
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx(limit_rate="256k")  # about 4 s for the model
        hub = env.start_hub(world)
        env.start_daemon(env.write_config([hub], "chunk_size: 1MiB\nstore: {min_free: off}\n"))
        add = subprocess.Popen([CLI, "add", "voxcpm-1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, VOXD_SOCKET=env.socket))
        wait_until(lambda: state(env) and env.status("voxcpm-1.5")["bytes_done"] > (1 << 20), 30, "a first MiB")
        # Someone else takes what is left of the disk while the model downloads.
        filler = os.path.join(small, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (64 << 10))
                    f.flush()
            except OSError:
                pass
        wait_until(lambda: state(env) == "waiting", 30, "the model to wait")
        self.assertIn("disk full", env.status("voxcpm-1.5")["reason"])
        self.assertIsNone(add.poll())
        # Whatever is in blobs/ is a whole, verified file.
        expected = {}
        for _, local, lfs in files:
            with open(local, "rb") as f:
                data = f.read()
            expected[sha256_file(local) if lfs else git_sha1(data)] = data
        blobs = os.path.join(env.hub_cache, "models--openbmb--VoxCPM1.5", "blobs")
        for b in os.listdir(blobs) if os.path.isdir(blobs) else []:
            with open(os.path.join(blobs, b), "rb") as f:
                self.assertEqual(f.read(), expected[b], b)
        os.unlink(filler)
        out, err = add.communicate(timeout=120)
        self.assertEqual(add.returncode, 0, "%s\n%s\n%s" % (out, err, env.daemon_log()))
        self.assert_exact("openbmb/VoxCPM1.5", COMMIT, files)
        # What reached the disk before it filled is not fetched again; what was in flight then (at
        # most a 1 MiB range on each of the 8 connections) is.
        lfs = sum(os.path.getsize(f) for _, f, lfs in files if lfs)
        self.assertLessEqual(env.cdn_bytes(), lfs + 8 * (1 << 20))

    def test_gc_removes_models_not_used_for_evict_after_and_keeps_shared_blobs(self):
        env = self.env
        shared = env.make_file("shared.bin", 3 << 20, seed=5)
        old_own = env.make_file("old.bin", 1 << 20, seed=6)
        new_own = env.make_file("new.bin", 1 << 20, seed=7)
        old_files = [("weights.bin", shared, True), ("own.bin", old_own, True)]
        new_files = [("weights.bin", shared, True), ("own.bin", new_own, True)]
        world = env.world({"org/old": {"refs": {"main": COMMIT}, "commits": {COMMIT: old_files}},
                           "org/new": {"refs": {"main": COMMIT}, "commits": {COMMIT: new_files}}})
        env.start_nginx()
        hub = env.start_hub(world)
        env.start_daemon(env.write_config([hub], "store: {evict_after: 3s}\n"))
        env.cli("add", "org/old")
        time.sleep(4)
        env.cli("add", "org/new")
        dry = json.loads(env.cli("gc", "--dry-run", "--json").stdout)
        self.assertEqual([m["model"] for m in dry["models"]], ["org/old@main"])
        self.assertEqual(dry["bytes"], 1 << 20)  # only its own blob; the shared one stays
        self.assertIn("would remove org/old@main", env.cli("gc", "--dry-run").stdout)
        self.assertEqual(env.status("org/old")["state"], "complete")  # a dry run removes nothing
        out = env.cli("gc").stdout
        self.assertIn("removed org/old@main", out)
        self.assertNotIn("org/old", env.cli("ls").stdout)
        self.assertFalse(os.path.exists(os.path.join(env.hub_cache, "models--org--old", "snapshots", COMMIT)))
        self.assert_exact("org/new", COMMIT, new_files)
        self.assertEqual(json.loads(env.cli("gc", "--json").stdout)["models"], [])


if __name__ == "__main__":
    unittest.main()
