"""Service behaviour: sd_notify readiness, socket timeouts, TLS verification, the terminal progress bar."""
import os
import socket
import subprocess
import time
import unittest

from harness import CLI, HERE, Env, VoxdTest, free_port, wait_until
from test_core import COMMIT, model_world


class ServiceTest(VoxdTest):
    def world(self):
        files = model_world(self.env, big_size=4 << 20)
        return self.env.world({"openbmb/VoxCPM1.5": {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})

    def test_notifies_systemd_when_ready(self):
        env = self.env
        path = os.path.join(env.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(20)
        self.addCleanup(sock.close)
        env.start_nginx()
        hub = env.start_hub(self.world())
        env.start_daemon(env.write_config([hub]), env={"NOTIFY_SOCKET": path})
        messages = sock.recv(4096).decode()
        self.assertIn("READY=1", messages)
        env.stop_daemon()
        self.assertIn("STOPPING=1", sock.recv(4096).decode())

    def test_a_stalled_client_is_disconnected_and_others_are_served(self):
        env = self.env
        env.start_nginx()
        hub = env.start_hub(self.world())
        env.start_daemon(env.write_config([hub]))
        s = socket.socket(socket.AF_UNIX)
        s.connect(env.socket)
        s.sendall(b'{"jsonrpc":"2.0","id":1,')  # and nothing more
        self.assertEqual(env.cli("status").returncode, 0)  # served meanwhile
        s.settimeout(30)
        t0 = time.monotonic()
        self.assertEqual(s.recv(100), b"")  # closed by the daemon
        self.assertLess(time.monotonic() - t0, 15)
        s.close()
        self.assertIn("stalled client", env.daemon_log())

    def test_https_origin_with_untrusted_certificate_is_refused(self):
        env = self.env
        key, crt = os.path.join(env.dir, "key.pem"), os.path.join(env.dir, "crt.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.4", "-keyout", key, "-out", crt], check=True, capture_output=True)
        port = free_port("127.0.0.4")
        conf = os.path.join(env.dir, "tls.conf")
        with open(conf, "w") as f:
            f.write("daemon off; worker_processes 1; pid %s/tls.pid; error_log %s/tls-error.log;\n"
                    "events {}\nhttp { access_log off; client_body_temp_path %s/tmp; proxy_temp_path %s/tmp;\n"
                    "fastcgi_temp_path %s/tmp; uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;\n"
                    "server { listen 127.0.0.4:%d ssl; ssl_certificate %s; ssl_certificate_key %s;\n"
                    "location / { return 200 '{}'; } } }\n" % ((env.dir,) * 7 + (port, crt, key)))
        p = subprocess.Popen(["nginx", "-c", conf, "-e", os.path.join(env.dir, "tls-error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.graceful = __import__("signal").SIGTERM
        env.procs.append(p)
        wait_until(lambda: env._connectable("127.0.0.4", port), 10, "the TLS origin")
        env.start_daemon(env.write_config(["https://127.0.0.4:%d" % port], "max_attempts_per_origin: 1\n"))
        r = env.cli("add", "voxcpm-1.5", check=False)
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("https://127.0.0.4:%d" % port, r.stderr)
        self.assertRegex(r.stderr.lower(), r"certificate|ssl")

    def test_bash_completion_offers_commands_and_the_daemons_models(self):
        env = self.env
        env.start_nginx()
        hub = env.start_hub(self.world())
        env.start_daemon(env.write_config([hub], "chunk_size: 1MiB\n"))
        env.cli("add", "voxcpm-1.5")
        script = os.path.join(os.path.dirname(os.path.dirname(HERE)), "packaging", "voxd.bash-completion")

        def complete(words):
            cmd = ('source "%s"; COMP_WORDS=(%s); COMP_CWORD=%d; _voxd; printf "%%s\\n" "${COMPREPLY[@]}"'
                   % (script, " ".join('"%s"' % w for w in words), len(words) - 1))
            env_ = dict(os.environ, VOXD_SOCKET=env.socket, PATH=os.path.dirname(CLI) + ":" + os.environ["PATH"])
            r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env_, timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout.split()

        self.assertEqual(complete(["voxd", "p"]), ["pause", "path", "peers"])
        self.assertEqual(complete(["voxd", "limit", ""]), ["download", "upload"])
        self.assertEqual(set(complete(["voxd", "status", ""])), {"openbmb/VoxCPM1.5@main", "voxcpm-1.5"})
        self.assertIn("--detach", complete(["voxd", "add", "--d"]))
        # An explicit --socket is what completion asks.
        other = complete(["voxd", "--socket", "/nonexistent/voxd.sock", "rm", ""])
        self.assertEqual(other, [])

    def test_progress_bar_on_a_terminal(self):
        env = self.env
        env.start_nginx()
        hub = env.start_hub(self.world())
        env.start_daemon(env.write_config([hub], "chunk_size: 1MiB\nbandwidth:\n  download_cap: 4MB/s\n"))
        r = subprocess.run(["script", "-qec", "%s --socket %s add voxcpm-1.5" % (CLI, env.socket), "/dev/null"],
                           capture_output=True, timeout=60)  # bytes: text mode would turn \r into \n
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("\r\x1b[K[", out)  # redrawn in place
        self.assertRegex(out, r"\[#+[>.]*\]\s+\d+\.\d% ")
        self.assertIn("ETA", out)
        self.assertIn("complete", out)


if __name__ == "__main__":
    unittest.main()
