"""A throwaway network of namespaces for the swarm benchmark.

One namespace `<tag>net` is the switch and router: a bridge per site, plus a core bridge for the
origin and the tracker, routed to each other. Every host is a namespace of its own, joined to its
bridge by a veth pair. Links are shaped with `tc` (htb for the rate) and nftables (random loss) on
both ends, so a host's uplink is the egress of its own end and its downlink the egress of the
switch's end. None of this is connected to the machine's own network: no traffic can leave.

Everything created is named with the tag, which carries the creating process id, so a run that
was killed with SIGKILL is swept by the next one."""
import json
import os
import re
import signal
import subprocess
import time

PREFIX = "vxbench"
UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def parse_rate(text):
    """'16mbit' -> bits per second; None for an unshaped link ('none' or absent)."""
    if text in (None, "none", "unlimited"):
        return None
    m = re.fullmatch(r"\s*([0-9.]+)\s*(bit|kbit|mbit|gbit)\s*", str(text).lower())
    if not m:
        raise ValueError("rate %r: expected a number with bit, kbit, mbit or gbit (as tc writes it)" % text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_duration(text):
    """'1.5ms' or '4s' -> seconds."""
    if text in (None, 0, "0"):
        return 0.0
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min)\s*", str(text))
    if not m:
        raise ValueError("duration %r: expected a number with ms, s or min" % text)
    return float(m.group(1)) * {"ms": 1e-3, "s": 1.0, "min": 60.0}[m.group(2)]


def run(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r.stdout


def netem_available():
    """Debian's own kernels have sch_netem; some container kernels lack it (delay is then not applied)."""
    tag = "%sprobe%d" % (PREFIX, os.getpid())
    run(["ip", "netns", "add", tag])
    try:
        run(["ip", "-n", tag, "link", "set", "dev", "lo", "up"])
        return subprocess.run(["ip", "netns", "exec", tag, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True).returncode == 0
    finally:
        run(["ip", "netns", "delete", tag], check=False)


def kill_namespace_processes(ns):
    for _ in range(50):
        pids = run(["ip", "netns", "pids", ns], check=False).split()
        if not pids:
            return
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


def sweep_stale():
    """Removes namespaces left by a benchmark run whose process no longer exists."""
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"%s(\d+)-" % PREFIX, name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            kill_namespace_processes(name)
            run(["ip", "netns", "delete", name], check=False)


class Host:
    def __init__(self, lab, name, ip, site):
        self.lab, self.name, self.ip, self.site = lab, name, ip, site
        self.ns = lab.tag + name
        self.port_if = "v-" + name  # the switch's end of the host's link

    def popen(self, argv, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns] + list(argv), **kw)

    def kill_all(self):
        kill_namespace_processes(self.ns)


class Lab:
    def __init__(self, with_netem):
        sweep_stale()
        self.tag = "%s%d-" % (PREFIX, os.getpid())
        self.namespaces = []
        self.with_netem = with_netem
        self.net = self._namespace("net")
        run(["ip", "netns", "exec", self.net, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self._bridge("brc", "10.0.0.1/24")
        self.sites = {}

    def _namespace(self, name):
        ns = self.tag + name
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
        return ns

    def _bridge(self, name, address=None):
        run(["ip", "-n", self.net, "link", "add", "name", name, "type", "bridge"])
        if address:
            run(["ip", "-n", self.net, "addr", "add", address, "dev", name])
        run(["ip", "-n", self.net, "link", "set", "dev", name, "up"])

    def add_site(self, index, wan_up=None, wan_down=None, wan_delay=0.0, wan_loss=0.0):
        """Site `index` (1-based) is 10.<index>.0.0/24 behind its own WAN link to the core."""
        br, a, b = "br%d" % index, "w%da" % index, "w%db" % index
        self._bridge(br)
        run(["ip", "-n", self.net, "link", "add", a, "type", "veth", "peer", "name", b])
        run(["ip", "-n", self.net, "link", "set", "dev", a, "master", br])
        run(["ip", "-n", self.net, "addr", "add", "10.%d.0.1/24" % index, "dev", b])
        for dev in (a, b):
            run(["ip", "-n", self.net, "link", "set", "dev", dev, "up"])
        self.shape(self.net, a, wan_up, wan_delay, wan_loss)  # the site's traffic out
        self.shape(self.net, b, wan_down, wan_delay, wan_loss)  # and in
        self.sites[index] = dict(bridge=br, wan_in=b, wan_out=a)
        return self.sites[index]

    def add_host(self, name, ip, site=None, up=None, down=None, delay=0.0, loss=0.0):
        """A host on site `site`'s bridge (None: the core, next to the origin)."""
        host = Host(self, name, ip, site)
        self._namespace(name)
        bridge = self.sites[site]["bridge"] if site else "brc"
        gateway = "10.%d.0.1" % (site or 0)
        run(["ip", "-n", self.net, "link", "add", host.port_if, "type", "veth", "peer", "name", "eth0",
             "netns", host.ns])
        run(["ip", "-n", self.net, "link", "set", "dev", host.port_if, "master", bridge])
        run(["ip", "-n", self.net, "link", "set", "dev", host.port_if, "up"])
        run(["ip", "-n", host.ns, "addr", "add", ip + "/24", "dev", "eth0"])
        run(["ip", "-n", host.ns, "link", "set", "dev", "eth0", "up"])
        run(["ip", "-n", host.ns, "route", "add", "default", "via", gateway])
        self.shape(host.ns, "eth0", up, delay, loss)
        self.shape(self.net, host.port_if, down, delay, loss)
        return host

    def shape(self, ns, dev, rate, delay, loss):
        """rate (bits/s) with htb; one-way delay with netem when the kernel has it; loss with nftables."""
        tc = ["ip", "netns", "exec", ns, "tc"]
        leaf = None
        if delay and self.with_netem:
            leaf = ["netem", "delay", "%.3fms" % (delay * 1e3), "limit", "100000"]
        if rate:
            nbytes = rate / 8
            # A burst of at least one GSO packet; a queue of 100 ms, as a modest real router buffers.
            burst = max(64 << 10, int(nbytes * 0.005))
            run(tc + ["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"])
            run(tc + ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "%dbit" % rate,
                      "ceil", "%dbit" % rate, "burst", str(burst), "cburst", str(burst)])
            run(tc + ["qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:"] +
                (leaf or ["bfifo", "limit", str(max(256 << 10, int(nbytes * 0.1)))]))
        elif leaf:
            run(tc + ["qdisc", "add", "dev", dev, "root"] + leaf)
        if loss:
            rule = ('table netdev vxb_%s {\n  chain out {\n    type filter hook egress device "%s" priority 0;\n'
                    '    numgen random mod 1000000 < %d drop\n  }\n}\n' % (dev.replace("-", "_"), dev, int(loss * 1e6)))
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rule, text=True,
                               capture_output=True)
            if r.returncode != 0:
                raise RuntimeError("nft (loss on %s): %s" % (dev, r.stderr.strip()))

    def counters(self):
        """Bytes sent and received by every interface of the switch namespace: {ifname: (rx, tx)}."""
        out = run(["ip", "-n", self.net, "-s", "-j", "link", "show"])
        return {i["ifname"]: (i["stats64"]["rx"]["bytes"], i["stats64"]["tx"]["bytes"]) for i in json.loads(out)}

    def close(self):
        for ns in reversed(self.namespaces):
            kill_namespace_processes(ns)
            run(["ip", "netns", "delete", ns], check=False)
        self.namespaces = []

    def leftovers(self):
        return [l.split()[0] for l in run(["ip", "netns", "list"], check=False).splitlines()
                if l.startswith(self.tag)]
