#!/usr/bin/env python3
"""bench/origin: one 1 GiB file plus small files served by nginx on loopback through the Hub
fixture's redirects. Times `voxd add` against curl (one stream) and aria2c -x8 -s8 fetching the same
files through the same URLs, in the same run, and samples the daemon's RssAnon.

With --per-connection RATE (nginx limit_rate syntax, e.g. 256k) every CDN connection is limited to
RATE bytes/s, as from a far mirror; the target is then voxd within 1.05x aria2c -x8's time.

Usage: bench/origin/run.py [--size-mib 1024] [--runs 3] [--per-connection 256k]
                           [--report bench/origin/REPORT.md]
Needs a build in ./build (scripts/build) and nginx, python3, curl, aria2c (scripts/install-deps --test).
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import CLI, Env  # noqa: E402

COMMIT = "b" * 40
REPO = "bench/model"


def rss_anon_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(cmd, **kw):
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit("%s failed (%d): %s %s" % (cmd[0], r.returncode, r.stdout[-500:], r.stderr[-500:]))
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--per-connection", help="nginx limit_rate for every CDN connection, e.g. 256k")
    ap.add_argument("--report")
    a = ap.parse_args()

    env = Env()
    try:
        big = env.make_file("model.safetensors", a.size_mib << 20, seed=7)
        smalls = [("config.json", env.make_text("config.json", '{"architecture": "voxcpm"}\n'), False),
                  ("tokenizer.json", env.make_file("tokenizer.json", 3_700_000, seed=8), False),
                  ("tokenizer_config.json", env.make_text("tokenizer_config.json", "{}\n" * 200), False),
                  ("special_tokens_map.json", env.make_text("special_tokens_map.json", "{}\n"), False),
                  ("README.md", env.make_text("README.md", "# bench\n" * 100), False)]
        files = [("model.safetensors", big, True)] + smalls
        world = env.world({REPO: {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}})
        env.start_nginx(limit_rate=a.per_connection or "0")
        hub = env.start_hub(world, page_size=100)
        urls = ["%s/%s/resolve/%s/%s" % (hub, REPO, COMMIT, p) for p, _, _ in files]
        total = sum(os.path.getsize(f) for _, f, _ in files)
        # Warm the page cache for the source so every tool reads the same hot data.
        subprocess.run(["cat", big], stdout=subprocess.DEVNULL, check=True)

        # One stream from a per-connection-limited origin takes 8x as long and has no target.
        tools = ("aria2c", "voxd") if a.per_connection else ("curl", "aria2c", "voxd")
        results = {t: [] for t in tools}
        rss_peak = 0
        out = os.path.join(env.dir, "out")
        env.start_daemon(env.write_config([hub]))
        for run in range(a.runs):
            for tool in tools:
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                if tool == "curl":
                    cmd = ["curl", "-sSfL"]
                    for u, (p, _, _) in zip(urls, files):
                        cmd += ["-o", os.path.join(out, p), u]
                    results[tool].append(timed(cmd))
                elif tool == "aria2c":
                    lst = os.path.join(env.dir, "aria2.txt")
                    with open(lst, "w") as f:
                        for u, (p, _, _) in zip(urls, files):
                            f.write("%s\n  out=%s\n" % (u, p))
                    results[tool].append(timed(["aria2c", "-q", "-x8", "-s8", "-k1M", "--file-allocation=none",
                                                "--allow-overwrite=true", "--auto-file-renaming=false",
                                                "--enable-dht=false", "--bt-enable-lpd=false",
                                                "-d", out, "-i", lst]))
                else:
                    env.cli("rm", REPO, check=False)
                    peak = [0]
                    stop = threading.Event()

                    def sample():
                        while not stop.is_set():
                            peak[0] = max(peak[0], rss_anon_kib(env.daemon.pid))
                            time.sleep(0.02)

                    th = threading.Thread(target=sample)
                    th.start()
                    try:
                        results[tool].append(timed([CLI, "--socket", env.socket, "add", REPO]))
                    finally:
                        stop.set()
                        th.join()
                    rss_peak = max(rss_peak, peak[0])
            print("run %d: %s" % (run + 1, ", ".join("%s %.2fs" % (k, v[-1]) for k, v in results.items())), flush=True)

        med = {k: statistics.median(v) for k, v in results.items()}
        lines = ["| tool | median wall time | throughput | runs |", "|---|---|---|---|"]
        for k in tools:
            lines.append("| %s | %.2f s | %.0f MB/s | %s |" % (
                {"curl": "curl (1 stream, no verification)", "aria2c": "aria2c -x8 -s8", "voxd": "voxd add (8 ranges, SHA-256 verified)"}[k],
                med[k], total / med[k] / 1e6, ", ".join("%.2f" % x for x in results[k])))
        limited = bool(a.per_connection)
        ratios = [] if limited else ["| voxd / curl | %.2f (target ≤ 0.75) |" % (med["voxd"] / med["curl"])]
        ratios += ["| voxd / aria2c | %.2f (target %s) |" % (med["voxd"] / med["aria2c"], "≤ 1.05" if limited else "≤ 0.75"),
                  "| daemon RssAnon peak | %.1f MiB (target ≤ 64 MiB) |" % (rss_peak / 1024)]
        table = "\n".join(lines) + "\n\n| ratio | value |\n|---|---|\n" + "\n".join(ratios) + "\n"
        print(table)
        if a.report:
            cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
            with open(a.report, "w") as f:
                f.write("# bench/origin — single-machine download from an origin%s\n\n" % (
                    ", %s per connection" % a.per_connection if limited else ""))
                if limited:
                    f.write("Every CDN connection is limited to %s bytes/s (nginx `limit_rate`, which lets each request\n"
                            "send about a second's worth at once), as from a far mirror.\n\n" % a.per_connection)
                f.write("One %d MiB file plus five small files (%.1f MB in all), served by nginx on loopback behind\n"
                        "the Hub fixture's 302 redirects (the same URLs for every tool), destination on the same disk.\n"
                        "curl and aria2c only download; voxd also resolves the manifest, verifies SHA-256 / git SHA-1\n"
                        "and writes the Hugging Face cache layout. Median of %d runs, tools interleaved.\n\n"
                        % (a.size_mib, total / 1e6, a.runs))
                f.write("Command: `bench/origin/run.py --size-mib %d --runs %d%s --report %s`\n\n" % (
                    a.size_mib, a.runs, " --per-connection " + a.per_connection if limited else "",
                    os.path.relpath(a.report, ROOT)))
                f.write("Machine: %s, %d cores, %s, Linux %s; %s; date %s.\n\n" % (
                    cpu, os.cpu_count(), subprocess.run(["sh", "-c", "free -g | awk '/Mem/{print $2\" GiB RAM\"}'"],
                                                         capture_output=True, text=True).stdout.strip(),
                    platform.release(), subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
                f.write(table)
    finally:
        env.close()


if __name__ == "__main__":
    main()
