#!/usr/bin/env python3
"""Runs the benchmark scenarios against every peer and writes the results.

    bench/run.py --quick                 # CI smoke: a few peers, short runs
    bench/run.py                         # the full run (bench/RESULTS.md + plot)
    bench/run.py --peers ours,tonic --scenarios 1,2 --out /tmp/r.md

Every server runs pinned to core 0 (taskset -c 0) and the driver
(target/release/bench-driver) on core 1; servers listen on 127.0.0.1 with
an OS-chosen port and print it ("PORT <n>"); every run is bounded in time
and count, and every server is killed when its run ends or this script
exits. Only the standard library is used here; the plot (bench/plot.py)
runs in the bench venv.
"""

import argparse
import atexit
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
BUILD = BENCH / ".build"
VENV_PY = BENCH / ".venv" / "bin" / "python"
TOOLS = BENCH / ".tools" / "bin"
DRIVER = TARGET / "bench-driver"
SERVER_CORE = "0"
DRIVER_CORE = "1"
OURS = "ours"

# --------------------------------------------------------------- peers ----

PEERS = {
    # name: (command, extra env, kind); kind "grpc" serves every method,
    # "ref" answers unary gRPC requests with bytes (physical-limit references).
    "ours": ([str(TARGET / "bench-server")], {}, "grpc"),
    "tonic": ([str(TARGET / "bench-tonic-server")], {}, "grpc"),
    "grpc-go": ([str(BUILD / "go-server")], {}, "grpc"),
    "grpc-c++": ([str(BUILD / "cpp-server")], {}, "grpc"),
    "grpcio-sync": ([str(VENV_PY), str(BENCH / "python" / "server.py"), "--mode", "sync"],
                    {"PYTHONPATH": str(BUILD / "py")}, "grpc"),
    "grpcio-aio": ([str(VENV_PY), str(BENCH / "python" / "server.py"), "--mode", "aio"],
                   {"PYTHONPATH": str(BUILD / "py")}, "grpc"),
    "grpc-js": (["node", str(BENCH / "node" / "server.js")], {}, "grpc"),
    "h2-ref": ([str(TARGET / "bench-h2-server")], {}, "ref"),
    "nghttpd": (None, {}, "ref"),  # started specially: fixed port, files
}
QUICK_PEERS = ["ours", "tonic", "grpc-go", "h2-ref"]

# ---------------------------------------------------- process handling ----

_live = []
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: the server dies with this script even on SIGKILL.
    _libc.prctl(1, signal.SIGKILL)


def _kill(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=3)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _cleanup():
    while _live:
        _kill(_live.pop())


atexit.register(_cleanup)
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def pinned(core, cmd):
    """Pins to one core when taskset and two cores exist."""
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ["taskset", "-c", core] + cmd
    return cmd


class Server:
    """A peer's server on 127.0.0.1, pinned to the server core."""

    def __init__(self, name, tls=None, extra=()):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        env = dict(os.environ)
        if name == "nghttpd":
            self.port = free_port()
            htdocs = BUILD / "nghttpd"
            cmd = ["nghttpd", "-d", str(htdocs), "--trailer", "grpc-status: 0"]
            cmd += [str(self.port), tls["key"], tls["cert"]] if tls else ["--no-tls", str(self.port)]
        else:
            cmd, env_extra, _ = PEERS[name]
            cmd = list(cmd) + list(extra)
            env.update(env_extra)
            if tls:
                cmd += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
            self.port = None
        self.proc = subprocess.Popen(pinned(SERVER_CORE, cmd), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        _live.append(self.proc)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start: {self.output()[-2000:]}")
            if self.port is None:
                m = re.search(r"^PORT (\d+)", self.output(), re.M)
                if m:
                    self.port = int(m.group(1))
            if self.port and port_open(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start within 60 s: {self.output()[-2000:]}")

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    @property
    def pid(self):
        return self.proc.pid

    def target(self):
        return f"127.0.0.1:{self.port}"

    def cpu_s(self):
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        f = stat.rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        _kill(self.proc)
        if self.proc in _live:
            _live.remove(self.proc)
        os.unlink(self.log.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def drive(server, args, mode_args, label, tls=None, client="h2", timeout=None, opts=None):
    """Runs bench-driver against `server`; returns its JSON (with `failed`)."""
    cmd = [str(DRIVER), "--target", server.target(), "--server-pid", str(server.pid), "--label", label,
           "--client", client, "--duration", str(opts.duration), "--warmup", str(opts.warmup)]
    if tls:
        cmd += ["--tls-ca", tls["ca"]]
    cmd += args + mode_args
    limit = timeout or (opts.duration + opts.warmup + 60)
    try:
        r = subprocess.run(pinned(DRIVER_CORE, cmd), capture_output=True, text=True, timeout=limit,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"label": label, "failed": True, "first_error": f"driver timed out after {limit} s"}
    line = next((l for l in reversed(r.stdout.splitlines()) if l.startswith("{")), None)
    res = json.loads(line) if line else {"label": label}
    res["failed"] = r.returncode != 0 or res.get("errors", 0) > 0
    if res["failed"] and "first_error" not in res:
        res["first_error"] = (r.stderr.strip().splitlines() or ["driver failed"])[-1]
    sys.stderr.write(r.stderr)
    return res


# ------------------------------------------------------------- helpers ----


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(v, ref):
    if v is None or ref in (None, 0) or v != v or ref != ref:
        return "–"
    return f"{v / ref:.2f}×"


class Table:
    def __init__(self, title, cols, note=""):
        self.title, self.cols, self.rows, self.note = title, cols, [], note

    def add(self, row):
        self.rows.append(row)
        print("  " + " | ".join(str(c) for c in row), flush=True)

    def markdown(self):
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self.cols) + " |")
        out.append("|" + "|".join("---" for _ in self.cols) + "|")
        for r in self.rows:
            out.append("| " + " | ".join(str(c) for c in r) + " |")
        return "\n".join(out) + "\n"


def best(results, key, lower_is_better):
    ok = [r for r in results if not r.get("failed") and r.get(key) is not None]
    if not ok:
        return results[-1]
    return (min if lower_is_better else max)(ok, key=lambda r: r[key])


def status(r):
    if r.get("failed"):
        return f"FAILED ({int(r.get('errors', 0))} errors: {r.get('first_error', '')[:80]})"
    return "ok"


# ----------------------------------------------------------- scenarios ----


def run_rows(peers, scenario, mode_args, opts, tls=None, key="server_cpu_us_per_call", lower=True, extra=None,
             reps=None):
    """Runs `mode_args` against each peer `reps` times (peers interleaved)
    and keeps each peer's best run by `key`."""
    runs = {p: [] for p in peers}
    for rep in range(reps or opts.reps):
        for p in peers:
            try:
                with Server(p, tls=tls, extra=(extra or {}).get(p, ())) as s:
                    runs[p].append(drive(s, [], mode_args, f"{scenario}/{p}", tls=tls, opts=opts))
            except Exception as e:  # a peer that cannot start is reported, the rest go on
                runs[p].append({"label": f"{scenario}/{p}", "failed": True, "first_error": str(e)[:300]})
    return {p: best(rs, key, lower) for p, rs in runs.items()}


def s1_latency(peers, opts, results):
    print("\n[1] unary ping-pong latency: 1 connection, 1 call in flight", flush=True)
    res = run_rows(peers, "s1", ["unary", "--conns", "1", "--streams", "1"], opts, key="p50_us")
    results["s1"] = res
    o = res.get(OURS, {})
    t = Table("1. Unary ping-pong latency (1 connection, 1 call in flight)",
              ["implementation", "p50 µs", "p99 µs", "p50 × ours", "p99 × ours", "calls/s",
               "server CPU µs/call", "status"],
              "Lower is better; `× ours` = peer ÷ ours (above 1: we are faster).")
    for p, r in res.items():
        t.add([p, fmt(r.get("p50_us")), fmt(r.get("p99_us")), ratio(r.get("p50_us"), o.get("p50_us")),
               ratio(r.get("p99_us"), o.get("p99_us")), fmt(r.get("rate")),
               fmt(r.get("server_cpu_us_per_call"), 2), status(r)])
    return t


def s2_saturation(peers, opts, results, tls=None, tag="s2", title="2. Unary saturation"):
    print(f"\n[{tag}] unary saturation: 10 connections × 10 streams, server on one core", flush=True)
    res = run_rows(peers, tag, ["unary", "--conns", "10", "--streams", "10"], opts, tls=tls)
    results[tag] = res
    o = res.get(OURS, {})
    t = Table(f"{title} (10 connections × 10 streams, server pinned to one core{', TLS' if tls else ''})",
              ["implementation", "server CPU µs/call", "CPU × ours", "calls/s", "calls/s × ours",
               "server CPU use", "driver CPU use", "p50 µs", "p99 µs", "status"],
              "Server CPU-µs per call is the steady figure (lower is better); `CPU × ours` = peer ÷ ours "
              "(above 1: the peer spends more CPU per call). calls/s is capped by the driver's core "
              "when the driver CPU use nears 100%.")
    for p, r in res.items():
        t.add([p, fmt(r.get("server_cpu_us_per_call"), 2),
               ratio(r.get("server_cpu_us_per_call"), o.get("server_cpu_us_per_call")),
               fmt(r.get("rate")), ratio(r.get("rate"), o.get("rate")),
               pct(r.get("server_cpu_util")), pct(r.get("driver_cpu_util")),
               fmt(r.get("p50_us")), fmt(r.get("p99_us")), status(r)])
    return t


def pct(v):
    return "–" if v is None else f"{100 * v:.0f}%"


def s3_stream(peers, opts, results):
    print("\n[3] bidi streaming: one stream, 64 messages in flight, 16-byte payloads", flush=True)
    res = run_rows(peers, "s3", ["stream", "--window", "64", "--size", "16"], opts,
                   key="server_cpu_us_per_msg")
    results["s3"] = res
    o = res.get(OURS, {})
    t = Table("3. Bidi streaming message rate (one stream, 64 messages in flight, 16-byte payload)",
              ["implementation", "msgs/s", "msgs/s × ours", "server CPU ns/msg", "CPU × ours",
               "p50 µs", "status"],
              "`msgs/s × ours` = peer ÷ ours (below 1: we are faster); `CPU × ours` = peer ÷ ours (above 1: "
              "the peer spends more CPU per message).")
    for p, r in res.items():
        ns = lambda x: None if x.get("server_cpu_us_per_msg") is None else 1000 * x["server_cpu_us_per_msg"]
        t.add([p, fmt(r.get("rate")), ratio(r.get("rate"), o.get("rate")), fmt(ns(r)), ratio(ns(r), ns(o)),
               fmt(r.get("p50_us")), status(r)])
    return t


def iperf3(opts):
    if not shutil.which("iperf3"):
        return None
    port = free_port()
    srv = subprocess.Popen(pinned(SERVER_CORE, ["iperf3", "-s", "-1", "-p", str(port)]), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
    _live.append(srv)
    try:
        # No connect probe: `iperf3 -s -1` serves exactly one client.
        time.sleep(0.5)
        r = subprocess.run(pinned(DRIVER_CORE, ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t",
                                                str(max(2, int(opts.duration))), "-J"]),
                           capture_output=True, text=True, timeout=opts.duration + 30)
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 8 / 1e9
    except Exception:
        return None
    finally:
        _kill(srv)
        _live.remove(srv)


def s4_large(peers, opts, results, sizes, tls=None, tag="s4", title="4. Large messages"):
    tables = []
    for size in sizes:
        mib = size >> 20
        print(f"\n[{tag}] large messages: {mib} MiB unary echo, 1 call in flight", flush=True)
        res = run_rows(peers, f"{tag}-{mib}MiB", ["unary", "--size", str(size)], opts, tls=tls,
                       key="gb_per_s_each_way", lower=False, reps=1)
        results[f"{tag}-{mib}MiB"] = res
        o = res.get(OURS, {})
        t = Table(f"{title}: {mib} MiB echo (1 connection, 1 call in flight{', TLS' if tls else ''})",
                  ["implementation", "GB/s each way", "× ours", "server CPU ms/call", "CPU × ours",
                   "p50 ms", "status"],
                  "`GB/s each way`: payload bytes per second sent, and as many received. `× ours` = peer ÷ ours "
                  "(below 1: we are faster).")
        ms = lambda x: None if x.get("server_cpu_us_per_call") is None else x["server_cpu_us_per_call"] / 1000
        for p, r in res.items():
            t.add([p, fmt(r.get("gb_per_s_each_way"), 3), ratio(r.get("gb_per_s_each_way"), o.get("gb_per_s_each_way")),
                   fmt(ms(r), 2), ratio(ms(r), ms(o)),
                   fmt(None if r.get("p50_us") is None else r["p50_us"] / 1000, 2), status(r)])
        tables.append(t)
    if tls is None:
        bw = iperf3(opts)
        results["iperf3_gb_per_s"] = bw
        if bw and tables:
            tables[-1].note += f"\n\nLoopback TCP reference (iperf3, one stream, pinned the same way): {bw:.2f} GB/s one way."
            tonic = results.get(f"{tag}-{sizes[-1] >> 20}MiB", {}).get("tonic", {}).get("gb_per_s_each_way")
            if tonic:
                tables[-1].note += (
                    "\n\nThe echo is sequential (the whole request is sent before the response starts), so `GB/s each "
                    "way` counts each byte crossing loopback once up and once down, one after the other: with no "
                    f"processing at all, at the iperf3 rate, the ceiling is {bw / 2:.2f} GB/s each way, "
                    f"{bw / 2 / tonic:.2f}× tonic's {tonic:.3f} in this run"
                    + (" — 1.5× tonic is out of reach at this size" if bw / 2 < 1.5 * tonic else "")
                    + " (iperf3 writes 128 KiB blocks that stay in cache; a 16 MiB message does not). Server CPU per "
                    "call is the comparison that matters here.")
    return tables


def s5_fanin(peers, opts, results):
    print("\n[5] fan-in: 1,000 idle connections; 10 connections × 100 open streams", flush=True)
    res = {}
    for p in peers:
        row = {}
        for what, conns, streams in (("conn", 1000, 0), ("stream", 10, 100)):
            extra = ["--workers", "1100"] if p == "grpcio-sync" and streams else []
            try:
                with Server(p, extra=extra) as s:
                    r = drive(s, [], ["fanin", "--conns", str(conns), "--streams", str(streams)],
                              f"s5/{p}/{what}", opts=opts, timeout=120)
            except Exception as e:
                r = {"failed": True, "first_error": str(e)[:300]}
            row[what] = r
        res[p] = row
    results["s5"] = res
    o = res.get(OURS, {})
    t = Table("5. Fan-in memory (server RSS)",
              ["implementation", "KiB per connection", "× ours", "KiB per stream", "× ours", "idle RSS MiB",
               "status"],
              "1,000 connections with one finished call each; then, on a fresh server, 10 connections × 100 "
              "open bidi streams (each echoed one message). RSS deltas over the warm server's RSS; lower is "
              "better, `× ours` = peer ÷ ours.")
    for p, row in res.items():
        c, s = row["conn"], row["stream"]
        st = status(c) if c.get("failed") else status(s)
        t.add([p, fmt(c.get("kib_per_conn")), ratio(c.get("kib_per_conn"), o.get("conn", {}).get("kib_per_conn")),
               fmt(s.get("kib_per_stream")), ratio(s.get("kib_per_stream"), o.get("stream", {}).get("kib_per_stream")),
               fmt(None if c.get("rss_base_kib") is None else c["rss_base_kib"] / 1024), st])
    return t


def s7_clients(opts, results):
    print("\n[7] binding overhead: clients against our server", flush=True)
    res = {}
    for client in ("h2", "core", "tonic"):
        for what, conns, streams in (("1x1", 1, 1), ("10x10", 10, 10)):
            runs = []
            for _ in range(opts.reps):
                with Server(OURS) as s:
                    runs.append(drive(s, [], ["unary", "--conns", str(conns), "--streams", str(streams)],
                                      f"s7/{client}/{what}", client=client, opts=opts))
            res[f"{client}/{what}"] = best(runs, "driver_cpu_us_per_call", True)
    results["s7"] = res
    names = {"h2": "raw h2 (driver floor)", "core": "grpc-core Rust API", "tonic": "tonic client"}
    t = Table("7. Binding overhead: client cost of one unary call against our server",
              ["client", "client CPU µs/call (10×10)", "× grpc-core", "calls/s (10×10)", "p50 µs (1×1)",
               "p50 × grpc-core", "status"],
              "Client CPU from the driver process's own /proc/self/stat; `× grpc-core` = client ÷ grpc-core "
              "(above 1: the other client costs more). The C ABI, Python and Node clients join as they land; "
              "their incumbents (grpcio, grpc-js) will be measured the same way.")
    oc = res.get("core/10x10", {})
    ol = res.get("core/1x1", {})
    for client in ("h2", "core", "tonic"):
        sat, lat = res[f"{client}/10x10"], res[f"{client}/1x1"]
        t.add([names[client], fmt(sat.get("driver_cpu_us_per_call"), 2),
               ratio(sat.get("driver_cpu_us_per_call"), oc.get("driver_cpu_us_per_call")), fmt(sat.get("rate")),
               fmt(lat.get("p50_us")), ratio(lat.get("p50_us"), ol.get("p50_us")),
               status(sat) if sat.get("failed") else status(lat)])
    return t


def crosscheck(opts, results):
    """Our driver vs h2load and ghz against the same server processes."""
    print("\n[x] cross-check of the driver against h2load and ghz", flush=True)
    ghz = TOOLS / "ghz"
    rows = []
    req = BUILD / "hello-request.bin"
    req.write_bytes(b"\x00\x00\x00\x00\x07\x0a\x05world")
    for p in (OURS, "grpc-go"):
        with Server(p) as s:
            d = drive(s, [], ["unary", "--conns", "10", "--streams", "10"], f"x/{p}/driver", opts=opts)
            rows.append((p, "bench-driver", d.get("rate"), d.get("mean_us"), d.get("p50_us"),
                         d.get("server_cpu_us_per_call"), status(d)))
            n = int(min(max((d.get("rate") or 20000) * opts.duration, 20000), 400000))
            if shutil.which("h2load"):
                c0 = s.cpu_s()
                r = subprocess.run(pinned(DRIVER_CORE, [
                    "h2load", "-n", str(n), "-c", "10", "-m", "10", "-d", str(req),
                    "-H", "content-type: application/grpc", "-H", "te: trailers",
                    f"http://{s.target()}/helloworld.Greeter/SayHello"]),
                    capture_output=True, text=True, timeout=120)
                cpu = (s.cpu_s() - c0) * 1e6 / n
                m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", r.stdout)
                lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", r.stdout)
                ok = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", r.stdout)
                st = "ok" if ok and ok.group(1) == str(n) else f"{ok.groups() if ok else r.stderr[-200:]}"
                rows.append((p, "h2load", float(m.group(1)) if m else None, dur_us(lat.group(3)) if lat else None,
                             None, cpu, st + " (sees HTTP status only)"))
            if ghz.exists():
                gn = min(n, 100000)
                c0 = s.cpu_s()
                r = subprocess.run(pinned(DRIVER_CORE, [
                    str(ghz), "--insecure", "--proto", str(BENCH / "proto" / "helloworld.proto"),
                    "--import-paths", str(BENCH / "proto"), "--call", "helloworld.Greeter.SayHello",
                    "-d", '{"name":"world"}', "-c", "100", "--connections", "10", "-n", str(gn),
                    "-O", "json", s.target()]), capture_output=True, text=True, timeout=180)
                cpu = (s.cpu_s() - c0) * 1e6 / gn
                try:
                    g = json.loads(r.stdout)
                    p50 = next((x["latency"] / 1000 for x in g.get("latencyDistribution") or []
                                if x["percentage"] == 50), None)
                    okn = (g.get("statusCodeDistribution") or {}).get("OK", 0)
                    rows.append((p, "ghz", g["rps"], g["average"] / 1000, p50, cpu,
                                 "ok" if okn == gn else f"{okn}/{gn} OK"))
                except (ValueError, KeyError):
                    rows.append((p, "ghz", None, None, None, None, f"failed: {r.stderr[-200:]}"))
    results["crosscheck"] = rows
    t = Table("Cross-check: bench-driver vs h2load and ghz (10 connections × 10 streams, SayHello)",
              ["server", "load tool", "calls/s", "mean µs", "p50 µs", "server CPU µs/call", "status"],
              "Same server process for the three tools, each pinned to the driver core. h2load's count "
              "includes every HTTP 200, whatever the grpc-status; ghz checks the status like bench-driver.")
    for row in rows:
        t.add([row[0], row[1], fmt(row[2]), fmt(row[3]), fmt(row[4]), fmt(row[5], 2), row[6]])
    # How the tools agree, per server, relative to bench-driver.
    notes = []
    for srv in (OURS, "grpc-go"):
        mine = next((r for r in rows if r[0] == srv and r[1] == "bench-driver"), None)
        if not mine:
            continue
        parts = []
        for r in rows:
            if r[0] == srv and r[1] != "bench-driver" and r[2] and mine[2] and r[5] and mine[5]:
                parts.append(f"{r[1]} {r[2] / mine[2]:.2f}× the calls/s at {r[5] / mine[5]:.2f}× the server "
                             f"CPU per call")
        if parts:
            notes.append(f"against {srv}: " + "; ".join(parts))
    if notes:
        t.note += "\n\nRelative to bench-driver on the same server: " + " — ".join(notes) + "."
    return t


def dur_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]


# -------------------------------------------------------------- report ----


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, shell=True).stdout.strip()
    except Exception:
        return ""


def versions():
    lock = (ROOT / "Cargo.lock").read_text()

    def crate(name):
        m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', lock)
        return m.group(1) if m else "?"

    def gomod(mod):
        m = re.search(rf"{re.escape(mod)} (v\S+)", (BENCH / "go" / "go.mod").read_text())
        return m.group(1) if m else "?"

    def pyver(expr):
        mod = expr.split(".")[0]
        return sh(f"{VENV_PY} -c 'import {mod}; print({expr})'") if VENV_PY.exists() else "?"

    js = BENCH / "node" / "node_modules" / "@grpc" / "grpc-js" / "package.json"
    return {
        "grpc-core": f"{crate('grpc-core')} (git {sh('git -C ' + str(ROOT) + ' rev-parse --short HEAD')}"
                     f"{', uncommitted changes' if sh('git -C ' + str(ROOT) + ' status --porcelain') else ''})",
        "rustc": sh("rustc --version"),
        "h2 crate": crate("h2"),
        "tonic": crate("tonic"),
        "grpc-go": f"{gomod('google.golang.org/grpc')} ({sh('go version')})",
        "gRPC C++": f"{sh('pkg-config --modversion grpc++')} (Debian libgrpc++-dev, callback API)",
        "grpcio": f"{pyver('grpc.__version__')} (Python {pyver('platform.python_version()')})",
        "@grpc/grpc-js": f"{json.loads(js.read_text())['version'] if js.exists() else '?'} (Node {sh('node --version')})",
        "nghttpd / h2load": sh("nghttpd --version").split()[-1] if shutil.which("nghttpd") else "–",
        "iperf3": sh("iperf3 --version").splitlines()[0] if shutil.which("iperf3") else "–",
        "ghz": (sh(f"go version -m {TOOLS / 'ghz'} | awk '$2==\"github.com/bojand/ghz\" {{print $3}}'")
                or "–"),
    }


def machine():
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return (f"{model.group(1) if model else '?'}, {os.cpu_count()} cores, "
            f"{int(mem.group(1)) // 1024 // 1024 if mem else '?'} GiB, Linux {platform.release()}")


def targets(results):
    """The issue's targets, computed from this run."""
    out = []

    def get(scn, peer, key):
        r = results.get(scn, {}).get(peer) or {}
        return None if r.get("failed") else r.get(key)

    def line(what, num, den, goal, better_low=True):
        if num is None or den in (None, 0):
            out.append(f"| {what} | – | {goal} | not measured |")
            return
        v = num / den
        met = v <= float(goal.split()[1].rstrip("×")) if better_low else v >= float(goal.split()[1].rstrip("×"))
        out.append(f"| {what} | {v:.2f}× | {goal} | {'met' if met else 'NOT met'} |")

    cpu = lambda p: get("s2", p, "server_cpu_us_per_call")
    line("server CPU µs/call, ours ÷ tonic", cpu(OURS), cpu("tonic"), "≤ 0.8×")
    line("server CPU µs/call, ours ÷ gRPC C++", cpu(OURS), cpu("grpc-c++"), "≤ 0.6×")
    line("server CPU µs/call, ours ÷ raw h2 reference", cpu(OURS), cpu("h2-ref"), "≤ 2.5×")
    line("ping-pong p50, ours ÷ tonic", get("s1", OURS, "p50_us"), get("s1", "tonic", "p50_us"), "≤ 1.0×")
    for mib in (1, 16):
        k = f"s4-{mib}MiB"
        line(f"{mib} MiB echo GB/s, ours ÷ tonic", get(k, OURS, "gb_per_s_each_way"),
             get(k, "tonic", "gb_per_s_each_way"), "≥ 1.5×", better_low=False)
    return ["| target | this run | goal | |", "|---|---|---|---|"] + out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: few peers, short runs, scenarios 1, 2, 3, 4 (1 MiB)")
    ap.add_argument("--peers", help="comma-separated peers (default: all, or the quick set)")
    ap.add_argument("--scenarios", help="comma-separated: 1,2,3,4,5,6,7,x")
    ap.add_argument("--duration", type=float, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per run")
    ap.add_argument("--reps", type=int, help="runs per peer in scenarios 1, 2, 3, 6a, 7; the best is kept")
    ap.add_argument("--out", help="markdown report (default bench/RESULTS.md, or bench/out/quick.md with --quick)")
    ap.add_argument("--plot", help="latency plot PNG (default next to --out)")
    args = ap.parse_args()
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    args.reps = args.reps or (1 if quick else 2)
    peers = args.peers.split(",") if args.peers else (QUICK_PEERS if quick else list(PEERS))
    scenarios = args.scenarios.split(",") if args.scenarios else (
        ["1", "2", "3", "4"] if quick else ["1", "2", "3", "4", "5", "6", "7", "x"])
    out = Path(args.out) if args.out else (BENCH / "out" / "quick.md" if quick else BENCH / "RESULTS.md")
    plot = Path(args.plot) if args.plot else out.with_name("latency.png" if not quick else "latency-quick.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    BUILD.mkdir(exist_ok=True)

    # 1,000 connections need file descriptors on both ends.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    missing = [p for p in peers if p != "nghttpd" and not Path(PEERS[p][0][0]).exists()
               and not shutil.which(PEERS[p][0][0])]
    if "nghttpd" in peers and not shutil.which("nghttpd"):
        missing.append("nghttpd")
    for m in missing:
        print(f"peer {m} is not installed; skipped (run `make bench` to install it)", file=sys.stderr)
    peers = [p for p in peers if p not in missing]
    grpc_peers = [p for p in peers if PEERS[p][2] == "grpc"]
    unary_peers = [p for p in peers if p != "nghttpd"]  # nghttpd answers SayHello only
    if "nghttpd" in peers:
        d = BUILD / "nghttpd" / "helloworld.Greeter"
        d.mkdir(parents=True, exist_ok=True)
        (d / "SayHello").write_bytes(b"\x00\x00\x00\x00\x0f\x0a\x0dHello, world!")

    tls = None
    if "6" in scenarios:
        certs = BUILD / "certs"
        subprocess.run([str(DRIVER), "certs", str(certs)], check=True)
        tls = {"ca": str(certs / "ca.pem"), "cert": str(certs / "server.pem"), "key": str(certs / "server.key")}

    started = time.time()
    results, tables = {}, []
    if "1" in scenarios:
        tables.append(s1_latency(peers, args, results))
    if "2" in scenarios:
        tables.append(s2_saturation(peers, args, results))
    if "3" in scenarios:
        tables.append(s3_stream(grpc_peers, args, results))
    sizes = [1 << 20] if quick else [1 << 20, 16 << 20]
    if "4" in scenarios:
        tables += s4_large(unary_peers, args, results, sizes)
    if "5" in scenarios:
        tables.append(s5_fanin(grpc_peers, args, results))
    if "6" in scenarios:
        tls_peers = [p for p in unary_peers]
        tables.append(s2_saturation(tls_peers, args, results, tls=tls, tag="s6-2", title="6a. TLS unary saturation"))
        tables += s4_large(tls_peers, args, results, sizes, tls=tls, tag="s6-4", title="6b. TLS large messages")
    if "7" in scenarios and OURS in peers:
        tables.append(s7_clients(args, results))
    if "x" in scenarios and OURS in peers and "grpc-go" in peers:
        tables.append(crosscheck(args, results))
    elapsed = time.time() - started

    failed = []
    for scn, rs in results.items():
        for p, r in (rs.items() if isinstance(rs, dict) else ()):
            for one in (r.values() if scn == "s5" else [r]):
                if isinstance(one, dict) and one.get("failed"):
                    failed.append(f"{scn}/{p}")
    failed = sorted(set(failed))
    cmd = os.environ.get("BENCH_COMMAND") or "bench/run.py " + " ".join(sys.argv[1:])
    md = [
        "# grpc-core benchmarks",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {machine()}",
        f"- command: `{cmd}` ({elapsed / 60:.1f} min; {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up per run; best of {args.reps} interleaved runs per peer in scenarios 1, 2, 3, 6a and 7, one run in 4 and 6b)",
        f"- pinning: every server on core {SERVER_CORE} (`taskset -c {SERVER_CORE}`), the load tool on core "
        f"{DRIVER_CORE}; the machine is shared, so absolute numbers move between runs: compare the ratios, "
        "which come from the same run.",
        "- driver: `bench-driver` (raw h2, pre-encoded requests, every response checked: HTTP 200, one "
        "message of the expected size, `grpc-status: 0`); server CPU from `/proc/PID/stat` (utime+stime) "
        "over the measured window.",
        f"- failed runs: {', '.join(failed) if failed else 'none'}",
        "",
        "Versions:",
        "",
    ]
    md += [f"- {k}: {v}" for k, v in versions().items()]
    md += ["", "## Targets (issue 7)", ""] + targets(results) + ["", "## Results", ""]
    md += [t.markdown() for t in tables]
    md.append(f"![latency percentiles]({plot.name})\n")
    out.write_text("\n".join(md))
    raw = out.with_suffix(".json")
    raw.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out} and {raw} in {elapsed / 60:.1f} min", flush=True)
    if VENV_PY.exists() and ("1" in scenarios or "2" in scenarios):
        r = subprocess.run([str(VENV_PY), str(BENCH / "plot.py"), str(raw), str(plot)], capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip()[-500:])
    if failed:
        print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
