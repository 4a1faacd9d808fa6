"""A real Hub client agrees with voxd's cache: @huggingface/hub's snapshotDownload against the same
origin, with voxd's hub_cache as its cacheDir, downloads no file, and scanCacheDir has no warnings."""
import json
import os
import subprocess
import unittest

from harness import VoxdTest
from test_core import COMMIT, model_world

CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_client")


class HubClientTest(VoxdTest):
    def test_snapshot_download_finds_everything_in_place(self):
        self.assertTrue(os.path.isdir(os.path.join(CLIENT, "node_modules", "@huggingface", "hub")),
                        "run `npm ci` in tests/hf_client first (scripts/test does)")
        env = self.env
        files = model_world(env)
        world = env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx()
        hub = env.start_hub(world)
        env.start_daemon(env.write_config([hub], "chunk_size: 1MiB\n"))
        env.cli("add", "voxcpm-1.5")
        cdn_before = env.cdn_bytes()
        hub_before = len(env.hub_log())
        r = subprocess.run(["node", "check.mjs", hub, env.hub_cache, "openbmb/VoxCPM1.5"], cwd=CLIENT,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(out["fileRequests"], [])
        self.assertEqual(out["warnings"], [])
        self.assertEqual(env.cdn_bytes(), cdn_before)
        self.assertFalse([q for q in env.hub_log()[hub_before:] if "/resolve/" in q["path"]])
        self.assertEqual(out["folder"], env.cli("path", "voxcpm-1.5").stdout.strip())
        (repo,) = out["repos"]
        self.assertEqual(repo["id"], "openbmb/VoxCPM1.5")
        self.assertEqual(repo["revisions"][0]["commit"], COMMIT)
        self.assertEqual(repo["revisions"][0]["refs"], ["main"])
        # The client's scanner lists the snapshot's top-level files by absolute path.
        listed = sorted(os.path.relpath(f, out["folder"]) for f in repo["revisions"][0]["files"])
        self.assertEqual(listed, sorted(p for p, _, _ in files if "/" not in p))


if __name__ == "__main__":
    unittest.main()
