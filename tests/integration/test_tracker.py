"""voxd-tracker against real clients: the binary over HTTP and UDP, bad input, the registry, and
third-party BitTorrent clients (aria2c in a loopback-only namespace, a libtorrent client)."""
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from harness import wait_until
from tracker_harness import Netns, Tracker, UdpClient, bdecode, make_torrent

BLOB = "ab" * 32


class TrackerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="voxd-tracker-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def tracker(self, **kw):
        t = Tracker(self.dir, **kw).start()
        self.addCleanup(t.stop)
        return t

    def make_file(self, name, size):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path

    # ------------------------------------------------------------------------------------------
    def test_http_announce_scrape_and_keep_alive(self):
        t = self.tracker(extra=["--interval", "60"])
        ih = os.urandom(20)
        r1 = t.announce(ih, 6001, left=100, event="started")
        self.assertEqual(r1[b"peers"], b"")  # the requester is not in its own list
        self.assertIn(b"interval", r1)
        self.assertGreaterEqual(r1[b"interval"], 54)  # 60 s with 10% jitter
        self.assertLessEqual(r1[b"interval"], 66)
        r2 = t.announce(ih, 6002, left=0, event="completed")
        self.assertEqual(r2[b"peers"], bytes([127, 0, 0, 1]) + struct.pack(">H", 6001))
        self.assertEqual((r2[b"complete"], r2[b"incomplete"], r2[b"downloaded"]), (1, 1, 1))
        bad = t.announce(b"short", 6003)
        self.assertIn(b"failure reason", bad)
        self.assertIn(b"20 bytes", bad[b"failure reason"])
        import urllib.parse
        status, body = t.get("/scrape?info_hash=%s&info_hash=%s" % (urllib.parse.quote(ih), urllib.parse.quote(os.urandom(20))))
        files = bdecode(body)[b"files"]
        self.assertEqual(files[ih][b"complete"], 1)
        self.assertEqual(files[ih][b"incomplete"], 1)
        # Several requests on one keep-alive connection.
        import http.client
        c = http.client.HTTPConnection(t.ip, t.port, timeout=10)
        for _ in range(3):
            c.request("GET", "/healthz")
            r = c.getresponse()
            self.assertEqual(r.read(), b"ok\n")
        c.close()
        self.assertEqual(t.metric("voxd_tracker_announces_total", 'protocol="http",result="ok"'), 2)
        self.assertEqual(t.metric("voxd_tracker_swarms"), 1)

    def test_udp_connect_announce_scrape(self):
        t = self.tracker()
        u = UdpClient(t.ip, t.port)
        self.addCleanup(u.close)
        conn = u.connect()
        ih = os.urandom(20)
        u.announce(conn, ih, 7001, left=10)
        # libtorrent appends a BEP 41 URL option after the 98 bytes; it must be accepted.
        r, tx = u.announce(conn, ih, 7002, left=0, options=bytes([2, 9]) + b"/announce")
        action, rtx, interval, leechers, seeders = struct.unpack(">IIIII", r[:20])
        self.assertEqual((action, rtx, leechers, seeders), (1, tx, 1, 1))
        self.assertEqual(r[20:], bytes([127, 0, 0, 1]) + struct.pack(">H", 7001))
        r, tx = u.scrape(conn, [ih])
        self.assertEqual(struct.unpack(">IIIII", r), (2, tx, 1, 0, 1))
        r, tx = u.announce(12345, ih, 7003)
        self.assertEqual(struct.unpack(">I", r[:4])[0], 3)  # error: unknown connection id
        self.assertIn(b"connection id", r[8:])
        r = u.exchange(struct.pack(">QII", conn, 1, 77) + b"x" * 10)  # truncated announce
        self.assertEqual(struct.unpack(">II", r[:8]), (3, 77))

    def test_ipv6_and_dual_stack(self):
        t = self.tracker(ip="::")
        ih = os.urandom(20)
        u6 = UdpClient("::1", t.port)
        self.addCleanup(u6.close)
        conn = u6.connect()
        u6.announce(conn, ih, 7101, left=5)
        r, tx = u6.announce(conn, ih, 7102, left=5)
        self.assertEqual(len(r) - 20, 18)  # one IPv6 peer: 16-byte address + port
        self.assertEqual(r[20:36], socket.inet_pton(socket.AF_INET6, "::1"))
        # An IPv4 client of the same [::] socket is an IPv4 peer, answered with 6-byte entries.
        u4 = UdpClient("127.0.0.1", t.port)
        self.addCleanup(u4.close)
        c4 = u4.connect()
        u4.announce(c4, ih, 7201, left=5)
        r, tx = u4.announce(c4, ih, 7202, left=5)
        self.assertEqual(r[20:], bytes([127, 0, 0, 1]) + struct.pack(">H", 7201))
        # HTTP over IPv6 returns peers6.
        t6 = Tracker(self.dir, ip="::1")
        t6.port = t.port
        got = t6.announce(ih, 7301, left=5)
        self.assertEqual(len(got.get(b"peers6", b"")) % 18, 0)
        self.assertGreaterEqual(len(got.get(b"peers6", b"")), 18)

    def test_garbage_on_tcp_and_udp_leaves_the_tracker_answering(self):
        t = self.tracker()
        for payload in [os.urandom(5000), b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
                        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 3000,
                        b"PUT /v1/blobs/%s/torrent HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n" % BLOB.encode()]:
            with socket.create_connection((t.ip, t.port), timeout=5) as s:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    s.recv(1000)
                except OSError:
                    pass
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for n in (0, 1, 15, 16, 97, 98, 1500):
            u.sendto(os.urandom(n), (t.ip, t.port))
        u.close()
        self.assertEqual(t.get("/healthz"), (200, b"ok\n"))
        self.assertEqual(t.announce(os.urandom(20), 6000).get(b"peers"), b"")
        uc = UdpClient(t.ip, t.port)
        self.addCleanup(uc.close)
        self.assertTrue(uc.connect())
        self.assertGreater(t.metric("voxd_tracker_rejected_total"), 0)
        self.assertIsNone(t.proc.poll())

    def test_registry_validates_persists_and_serves(self):
        t = self.tracker()
        data = self.make_file("blob", 700_000)
        torrent, ih = make_torrent(data, BLOB, t.url + "/announce")
        path = "/v1/blobs/%s/torrent" % BLOB
        self.assertEqual(t.request("PUT", path, torrent)[0], 401)  # no token
        self.assertEqual(t.request("PUT", path, torrent, token="wrong")[0], 401)
        status, body = t.request("PUT", path, make_torrent(data, "wrong-name", None)[0], token=t.token)
        self.assertEqual(status, 400)
        self.assertIn(b"named after the blob id", body)
        self.assertEqual(t.request("PUT", path, torrent, token=t.token)[0], 201)
        self.assertEqual(t.request("PUT", path, torrent, token=t.token)[0], 200)  # same info dict
        other = self.make_file("other", 600_000)
        self.assertEqual(t.request("PUT", path, make_torrent(other, BLOB, None)[0], token=t.token)[0], 409)
        self.assertEqual(t.get(path), (200, torrent))
        self.assertEqual(t.get("/v1/blobs/%s/torrent" % ("cd" * 32))[0], 404)
        self.assertEqual(t.get("/v1/blobs/not-a-blob/torrent")[0], 404)
        # A restart keeps it; a damaged file beside it is reported and skipped.
        t.stop()
        with open(os.path.join(t.data, "torrents", "ef" * 32 + ".torrent"), "wb") as f:
            f.write(b"d4:infoi3ee")
        t2 = self.tracker(extra=["--allow-list"])
        self.assertEqual(t2.get(path), (200, torrent))
        self.assertIn("skipping damaged", t2.read_log())
        self.assertEqual(t2.metric("voxd_tracker_registry_torrents"), 1)
        # Allow-list mode: the registered info-hash is served, others are refused.
        self.assertIn(b"peers", t2.announce(ih, 6000))
        self.assertIn(b"unknown info_hash", t2.announce(os.urandom(20), 6000)[b"failure reason"])

    def test_leases(self):
        import json
        t = self.tracker()
        path = "/v1/blobs/%s/lease" % BLOB
        body = lambda **kw: json.dumps(kw).encode()
        self.assertEqual(t.request("POST", path, body(holder="a"))[0], 401)
        s, b = t.request("POST", path, body(holder="a", ttl=30, bytes_done=0, bytes_total=100), token=t.token)
        self.assertEqual(s, 200)
        s, b = t.request("POST", path, body(holder="b", ttl=30), token=t.token)
        self.assertEqual(s, 409)
        held = json.loads(b)
        self.assertEqual(held["holder"], "a")
        self.assertGreater(held["expires_in"], 25)
        t.request("POST", path, body(holder="a", ttl=1, bytes_done=60, bytes_total=100), token=t.token)
        self.assertEqual(json.loads(t.get(path)[1])["bytes_done"], 60)
        time.sleep(1.2)  # the holder stopped renewing: its lease expires and another takes over
        self.assertEqual(t.request("POST", path, body(holder="b", ttl=30), token=t.token)[0], 200)
        self.assertEqual(t.request("DELETE", path, body(holder="a"), token=t.token)[0], 404)
        self.assertEqual(t.request("DELETE", path, body(holder="b"), token=t.token)[0], 200)
        self.assertEqual(t.request("POST", path, b"not json", token=t.token)[0], 400)

    def test_a_silent_peer_expires(self):
        t = self.tracker(extra=["--interval", "2"])
        ih = os.urandom(20)
        t.announce(ih, 6001, left=10)
        self.assertEqual(t.announce(ih, 6002, left=10)[b"incomplete"], 2)
        # Peer 6001 stops announcing; 6002 keeps going until 6001 has expired (2*2+2 s).
        wait_until(lambda: t.announce(ih, 6002, left=10)[b"incomplete"] == 1, 20, "the silent peer to expire", 0.5)
        self.assertEqual(t.announce(ih, 6002, left=10)[b"peers"], b"")

    def test_passkey_paths(self):
        t = self.tracker(extra=["--passkey", "s3cret"])
        ih = os.urandom(20)
        self.assertIn(b"unknown passkey", t.announce(ih, 6001)[b"failure reason"])
        import urllib.parse
        q = "info_hash=%s&peer_id=%s&port=6002&left=0" % (urllib.parse.quote(ih), "p" * 20)
        status, body = t.get("/announce/s3cret?" + q)
        self.assertIn(b"interval", bdecode(body))
        self.assertIn(b"failure reason", bdecode(t.get("/announce/wrong?" + q)[1]))
        self.assertIn(b"files", bdecode(t.get("/scrape/s3cret?info_hash=" + urllib.parse.quote(ih))[1]))

    def test_sighup_reloads_limits_and_allow_list_and_refuses_a_bad_config(self):
        import signal
        conf = os.path.join(self.dir, "tracker.yaml")
        with open(conf, "w") as f:
            f.write("interval: 60\nallow_list: false\n")
        t = self.tracker(extra=["--config", conf])
        ih = os.urandom(20)
        self.assertIn(b"interval", t.announce(ih, 6001))
        with open(conf, "w") as f:
            f.write("interval: 30\nallow_list: true\n")
        t.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in t.read_log(), 10, "the reload")
        self.assertIn(b"unknown info_hash", t.announce(ih, 6001)[b"failure reason"])
        with open(conf, "w") as f:
            f.write("interval: never\nallow_list: false\n")
        t.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in t.read_log(), 10, "the refusal")
        self.assertIn("interval: 'never' is not an integer", t.read_log())
        self.assertIn(b"unknown info_hash", t.announce(ih, 6001)[b"failure reason"])  # old config in force
        self.assertIsNone(t.proc.poll())

    def test_requests_per_source_address_are_limited(self):
        conf = os.path.join(self.dir, "tracker.yaml")
        with open(conf, "w") as f:
            f.write("max_requests_per_second: 5\n")
        t = self.tracker(extra=["--config", conf])
        replies = [t.announce(os.urandom(20), 6000 + i) for i in range(20)]
        limited = [r for r in replies if r.get(b"failure reason") == b"too many requests"]
        self.assertGreaterEqual(len(limited), 10)
        self.assertGreaterEqual(t.metric("voxd_tracker_rejected_total", 'reason="rate_limited"'), 10)

    def test_stop_is_clean_on_sigterm(self):
        t = self.tracker()
        t0 = time.monotonic()
        self.assertEqual(t.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("stopped", t.read_log())

    def test_bad_config_is_reported(self):
        from tracker_harness import TRACKER
        conf = os.path.join(self.dir, "tracker.yaml")
        with open(conf, "w") as f:
            f.write("listen: 127.0.0.1:1\ninterval: soon\nmax_peers: 0\nport: 5\n")
        r = subprocess.run([TRACKER, "--config", conf, "--check-config"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 10)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 3, r.stderr)
        self.assertTrue(lines[0].startswith(conf + ":2:11: interval: 'soon' is not an integer"), lines[0])
        self.assertIn(":3:", lines[1])
        self.assertTrue(lines[2].startswith(conf + ":4:1: port: unknown key"), lines[2])

    # ---- third-party clients ---------------------------------------------------------------------
    def aria2_swarm(self, scheme):
        ns = Netns()
        self.addCleanup(ns.close)
        t = Tracker(self.dir, netns=ns.name).start()
        self.addCleanup(t.stop)
        data = self.make_file("payload.bin", 3_000_000)
        torrent, ih = make_torrent(data, "payload.bin", "%s://127.0.0.1:%d/announce" % (scheme, t.port))
        tfile = os.path.join(self.dir, "payload.torrent")
        with open(tfile, "wb") as f:
            f.write(torrent)
        seed_dir, leech_dir = os.path.join(self.dir, "seed"), os.path.join(self.dir, "leech")
        os.makedirs(seed_dir)
        os.makedirs(leech_dir)
        shutil.copy(data, seed_dir)
        common = ["aria2c", "--enable-dht=%s" % ("true" if scheme == "udp" else "false"), "--bt-enable-lpd=false",
                  "--enable-peer-exchange=false", "--bt-tracker-interval=2", "--summary-interval=0",
                  "--console-log-level=warn", "--file-allocation=none", "--seed-ratio=0.0"]
        seed = ns.popen(common + ["--listen-port=16881", "--dht-listen-port=16891", "--check-integrity=true",
                                  "--bt-seed-unverified=false", "--seed-time=60", "-d", seed_dir, tfile],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(seed.kill)
        leech = ns.run(common + ["--listen-port=16882", "--dht-listen-port=16892", "--seed-time=0", "-d", leech_dir,
                                 tfile], capture_output=True, text=True, timeout=90)
        self.assertEqual(leech.returncode, 0, leech.stdout + leech.stderr)
        with open(data, "rb") as a, open(os.path.join(leech_dir, "payload.bin"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        proto = "udp" if scheme == "udp" else "http"
        metrics = ns.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % t.port], capture_output=True, text=True).stdout
        ok = [l for l in metrics.splitlines() if l.startswith('voxd_tracker_announces_total{protocol="%s",result="ok"}' % proto)]
        self.assertTrue(ok and float(ok[0].split()[-1]) >= 2, metrics)

    def test_aria2_swarm_over_http(self):
        self.aria2_swarm("http")

    def test_aria2_swarm_over_udp(self):
        self.aria2_swarm("udp")

    def test_libtorrent_client_swarm(self):
        # The client has DHT, LSD, UPnP and NAT-PMP off, and runs where only loopback exists anyway.
        ns = Netns()
        self.addCleanup(ns.close)
        t = Tracker(self.dir, netns=ns.name).start()
        self.addCleanup(t.stop)
        data = self.make_file("lt.bin", 2_000_000)
        torrent, ih = make_torrent(data, "lt.bin", t.url + "/announce")
        tfile = os.path.join(self.dir, "lt.torrent")
        with open(tfile, "wb") as f:
            f.write(torrent)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lt_client.py")
        seed_dir, leech_dir = os.path.join(self.dir, "lt-seed"), os.path.join(self.dir, "lt-leech")
        os.makedirs(seed_dir)
        os.makedirs(leech_dir)
        shutil.copy(data, seed_dir)
        # Debian's binding lives in the system interpreter.
        seed = ns.popen(["/usr/bin/python3", script, "seed", tfile, seed_dir, "127.0.0.1:0"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(seed.kill)
        leech = ns.run(["/usr/bin/python3", script, "leech", tfile, leech_dir, "127.0.0.2:0"],
                       capture_output=True, text=True, timeout=90)
        self.assertEqual(leech.returncode, 0, leech.stdout + leech.stderr)
        with open(data, "rb") as a, open(os.path.join(leech_dir, "lt.bin"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        metrics = ns.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % t.port], capture_output=True, text=True).stdout
        ok = [l for l in metrics.splitlines() if l.startswith('voxd_tracker_announces_total{protocol="http",result="ok"}')]
        self.assertTrue(ok and float(ok[0].split()[-1]) >= 2, metrics)


if __name__ == "__main__":
    unittest.main()
