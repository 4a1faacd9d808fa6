"""The short variant of bench/swarm (issue: swarm benchmark): four hosts in network namespaces, every
tool, functional facts only (exact copies; voxd's origin bytes within 1.1x the model), and the
promise that everything the benchmark creates is gone after it ends or is interrupted."""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import HERE, read_text, wait_until

RUN = os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench", "swarm", "run.py")


def bench_namespaces(pid):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if l.startswith("vxbench%d-" % pid)]


def processes_using(path):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if path.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


class BenchSwarmTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="voxd-bench-test-")
        os.chmod(self.dir, 0o755)  # nginx workers run as nobody

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.dir])

    def bench(self, *args):
        work = os.path.join(self.dir, "work")
        return work, subprocess.Popen([sys.executable, RUN, "--scenario", "smoke", "--no-plots", "--out",
                                       os.path.join(self.dir, "out"), "--work", work] + list(args),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_short_variant_every_copy_exact(self):
        work, p = self.bench("--check")
        out, err = p.communicate(timeout=240)
        print(out)
        self.assertEqual(p.returncode, 0, "bench/swarm smoke failed:\n%s\n%s" % (out, err))
        table = [[c.strip() for c in l.split("|")[1:-1]] for l in out.splitlines() if l.startswith("| ")]
        rows = {r[0]: dict(zip(table[0], r)) for r in table[1:]}  # the |---| line is not "| "
        self.assertEqual(set(rows), {"voxd", "aria2-hybrid", "curl", "aria2"})
        for tool, row in rows.items():
            self.assertEqual(row["done"], "4/4", row)
            self.assertEqual(row["exact"], "4/4", row)
        self.assertLessEqual(float(rows["voxd"]["origin x S"]), 1.1)
        self.assertEqual(bench_namespaces(p.pid), [])
        self.assertEqual(processes_using(work), [])

    def test_ctrl_c_removes_every_namespace_and_process(self):
        work, p = self.bench()
        wait_until(lambda: p.poll() is not None or processes_using(os.path.join(work, "smoke", "voxd")), 60,
                   "the voxd daemons of the benchmark")
        self.assertIsNone(p.poll(), p.communicate()[1] if p.poll() is not None else "")
        self.assertTrue(bench_namespaces(p.pid))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("interrupted", err)
        self.assertEqual(bench_namespaces(p.pid), [])
        time.sleep(0.2)
        self.assertEqual(processes_using(work), [])


if __name__ == "__main__":
    unittest.main()
