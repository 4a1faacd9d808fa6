"""Reliability as a fleet sees it (issue: transient outages never fail a download): origins out of
reach make a model wait and retry; `voxd add --timeout` bounds the wait."""
import os
import subprocess
import time
import unittest

import test_core
from harness import CLI, VoxdTest, free_port, wait_until
from test_core import COMMIT, model_world


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
        wait_until(lambda: env.status("voxcpm-1.5")["state"] == "waiting", 30, "the model to wait")
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

    def test_a_store_too_small_waits_for_room_then_completes(self):
        env = self.env
        small = os.path.join(env.dir, "small")
        os.makedirs(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        env.state_dir, env.hub_cache = os.path.join(small, "state"), os.path.join(small, "hub")
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
        wait_until(lambda: env.status("voxcpm-1.5")["state"] == "waiting", 30, "the model to wait for room")
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


if __name__ == "__main__":
    unittest.main()
