"""The Debian package (issue: packaging and service): scripts/package builds it and lintian passes;
`dpkg -i` installs it on this machine; the installed daemon runs as user voxd with the paths its
unit gives it; a member of group voxd adds a model from a loopback origin through the installed CLI;
a user outside the group is refused on the socket; `dpkg --purge` removes it all. Needs root."""
import glob
import grp
import os
import pwd
import shutil
import signal
import subprocess
import unittest

from harness import Env, read_text, sha256_file, wait_until
from swarm_harness import COMMIT, swarm_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEMBER = "voxd-test-member"


def run(*argv, check=True, **kw):
    r = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


def as_user(name, argv, groups=None):
    """argv run as `name` with its own group and, if given, supplementary groups."""
    pw = pwd.getpwnam(name)
    sup = "--groups=" + ",".join(str(g) for g in groups) if groups else "--clear-groups"
    return ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, sup, "--"] + argv


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r = run(os.path.join(ROOT, "scripts", "package"), timeout=1500)
        cls.deb = os.path.join(ROOT, r.stdout.strip().splitlines()[-1])
        cls.lintian = r.stdout + r.stderr

    def setUp(self):
        self.env = Env()
        self.addCleanup(self.env.close)
        self.daemon = None
        self.addCleanup(self.uninstall)

    def uninstall(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=15)
        run("dpkg", "--purge", "voxd", check=False)
        run("userdel", MEMBER, check=False)
        for d in ("/run/voxd", "/var/lib/voxd"):
            shutil.rmtree(d, ignore_errors=True)

    def test_install_run_as_voxd_and_gate_the_socket_by_group(self):
        self.assertTrue(os.path.basename(self.deb).startswith("voxd_"), self.deb)
        self.assertNotIn("E: ", self.lintian)
        run("dpkg", "-i", self.deb)
        # What the package put in place.
        for path in ("/usr/bin/voxd", "/usr/sbin/voxd-daemon", "/usr/sbin/voxd-tracker",
                     "/lib/systemd/system/voxd.service", "/lib/systemd/system/voxd-tracker.service",
                     "/usr/share/man/man5/voxd.yaml.5.gz", "/usr/share/man/man8/voxd-daemon.8.gz",
                     "/usr/share/bash-completion/completions/voxd", "/usr/lib/sysusers.d/voxd.conf"):
            self.assertTrue(os.path.exists(path), path)
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "voxd").stdout
        self.assertIn("/etc/voxd/voxd.yaml", conffiles)
        self.assertIn("/etc/voxd/tracker.yaml", conffiles)
        for page in ("man1/voxd.1.gz", "man8/voxd-tracker.8.gz"):
            self.assertTrue(os.path.exists("/usr/share/man/" + page), page)
        # With the programs and man pages installed, the units verify in full (Documentation= too).
        units = ["/lib/systemd/system/voxd.service", "/lib/systemd/system/voxd-tracker.service"]
        r = run("systemd-analyze", "verify", "--man=yes", *units, check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        run("/usr/sbin/voxd-daemon", "--config", "/etc/voxd/voxd.yaml", "--check-config")
        run("/usr/sbin/voxd-tracker", "--config", "/etc/voxd/tracker.yaml", "--check-config")
        voxd = pwd.getpwnam("voxd")
        group = grp.getgrnam("voxd")
        self.assertEqual(voxd.pw_shell, "/usr/sbin/nologin")
        # The unit's enable link (the start itself needs systemd as PID 1).
        self.assertTrue(glob.glob("/etc/systemd/system/multi-user.target.wants/voxd.service"))
        self.assertFalse(glob.glob("/etc/systemd/system/multi-user.target.wants/voxd-tracker.service"))

        # The daemon as voxd.service runs it: user voxd, RuntimeDirectory and StateDirectory (0750),
        # UMask 0027, the installed config plus a loopback origin.
        files = swarm_files(self.env, 3 << 20)
        world = self.env.world({"org/pkg": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        self.env.start_nginx()
        hub = self.env.start_hub(world)
        for d in ("/run/voxd", "/var/lib/voxd"):
            os.makedirs(d, exist_ok=True)
            os.chown(d, voxd.pw_uid, group.gr_gid)
            os.chmod(d, 0o750)
        conf = os.path.join(self.env.dir, "voxd.yaml")
        with open("/etc/voxd/voxd.yaml") as f:
            installed = f.read()
        with open(conf, "w") as f:
            f.write(installed + "\norigins:\n  - url: %s\n" % hub)
        os.chmod(conf, 0o644)
        log = os.path.join(self.env.dir, "installed-daemon.log")
        with open(log, "w") as out:
            self.daemon = subprocess.Popen(
                ["sh", "-c", "umask 0027 && exec \"$@\"", "sh"] +
                as_user("voxd", ["/usr/sbin/voxd-daemon", "--config", conf]),
                stdout=out, stderr=out, env=dict(os.environ, RUNTIME_DIRECTORY="/run/voxd",
                                                 STATE_DIRECTORY="/var/lib/voxd"))
        wait_until(lambda: os.path.exists("/run/voxd/voxd.sock") or self.daemon.poll() is not None, 20,
                   "the installed daemon's socket")
        self.assertIsNone(self.daemon.poll(), read_text(log))
        st = os.stat("/run/voxd/voxd.sock")
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (voxd.pw_uid, group.gr_gid, 0o660))

        # A member of group voxd adds the model through the installed CLI, at the default socket.
        run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MEMBER)
        member = as_user(MEMBER, ["/usr/bin/voxd", "add", "org/pkg"], groups=[group.gr_gid])
        r = run(*member, check=False, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + read_text(log))
        snapshot = "/var/lib/voxd/hub/models--org--pkg/snapshots/%s" % COMMIT
        for path, local, _ in files:
            with open(os.path.join(snapshot, path), "rb") as f, open(local, "rb") as g:
                self.assertTrue(f.read() == g.read(), path)
        blob = os.path.realpath(os.path.join(snapshot, files[0][0]))
        st = os.stat(blob)
        self.assertEqual((st.st_uid, st.st_gid), (voxd.pw_uid, group.gr_gid))
        self.assertEqual(st.st_mode & 0o077, 0o040, oct(st.st_mode))  # group may read; others nothing
        # The member (an inference service, say) can read the store; a user outside the group cannot.
        reader = run(*as_user(MEMBER, ["sha256sum", blob], groups=[group.gr_gid]), check=False)
        self.assertEqual(reader.returncode, 0, reader.stderr)
        self.assertIn(sha256_file(files[0][1]), reader.stdout)

        # Outside the group: refused on the socket, with one clear line.
        r = run(*as_user(MEMBER, ["/usr/bin/voxd", "status"]), check=False)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("permission denied", r.stderr)
        r = run(*as_user("nobody", ["/usr/bin/voxd", "status"]), check=False)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)

        self.daemon.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.wait(timeout=15), 0, read_text(log))
        run("dpkg", "--purge", "voxd")
        for path in ("/usr/sbin/voxd-daemon", "/etc/voxd/voxd.yaml", "/lib/systemd/system/voxd.service"):
            self.assertFalse(os.path.exists(path), path)


if __name__ == "__main__":
    unittest.main()
