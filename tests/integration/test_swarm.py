"""Integration tests for the peers-and-CDN issue: several real daemons, a real voxd-tracker (and
opentracker), a real nginx origin; all inside a loopback-only network namespace."""
import os
import subprocess
import threading
import time
import unittest

from swarm_harness import COMMIT, MiB, SwarmEnv, run_in_private_netns, swarm_files
from harness import wait_until

run_in_private_netns()


class SwarmTest(unittest.TestCase):
    def setUp(self):
        self.env = SwarmEnv()
        self.addCleanup(self.env.close)

    def tearDown(self):
        # The daemons' logs explain a failure; they go with the temp directory otherwise.
        result = self._outcome.result
        if any(t is self for t, _ in result.failures + result.errors):
            print(self.env.dump_logs())

    def wait_all(self, procs, timeout=240):
        for name, p in procs:
            out, err = p.communicate(timeout=timeout)
            self.assertEqual(p.returncode, 0, "%s: voxd add exited %d: %s %s\n%s" % (
                name, p.returncode, out, err, self.env.dump_logs()))

    def test_later_daemons_fetch_from_the_first(self):
        env = self.env
        files = swarm_files(env, 64 * MiB)
        env.start_origin(files)
        env.start_tracker()
        a = env.node(1).start()
        a.cli("add", "org/swarm")
        a.assert_exact(self, env.repo, COMMIT, files)
        first = env.cdn_bytes()
        self.assertLessEqual(first, env.lfs_size() * 1.05)
        b, c = env.node(2).start(), env.node(3).start()
        t0 = time.monotonic()
        self.wait_all([("B", b.add("org/swarm")), ("C", c.add("org/swarm"))])
        took = time.monotonic() - t0
        for n in (b, c):
            n.assert_exact(self, env.repo, COMMIT, files)
        later = env.cdn_bytes() - first
        size = env.total_size()
        print("B and C after A: origin served %d bytes for a %d-byte model (%.2f%%), %.1f s" % (
            later, size, 100.0 * later / size, took))
        self.assertLess(later, 0.05 * size)
        st = b.status("org/swarm")
        self.assertGreater(st["bytes_from_peers"], 0.9 * env.lfs_size())
        self.assertEqual(st["bytes_from_peers_lan"], st["bytes_from_peers"])
        self.assertGreater(a.status("org/swarm")["bytes_uploaded"], 0)


if __name__ == "__main__":
    unittest.main()
