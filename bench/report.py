#!/usr/bin/env python3
"""Turns bench/run.sh's raw results into the markdown report.

    bench/report.py [--check] RAW_FILE > results.md

RAW_FILE has one record a line, key=value pairs (values may be double-quoted):
    META ...                      date, machine, versions, timings
    WORKLOAD name=... requests=N concurrency=C metric=rps|mibps|mem body=BYTES ...
    RUN round=R workload=W rc=EXIT conns=K client=... ok=... bytes=... seconds=...

For each workload: a table of clients with the median (min-max) over rounds of its
metric, the median (min-max) of its ratio to hyper and to libcurl taken round by round
(libcurl = whichever of its two drivers has the better median on that workload, named),
CPU seconds per 10,000 requests or per GiB, peak RSS, and connections opened (counted by
nginx). Then the targets, met or missed, and the library sizes.

--check: exit 1 when any run failed (non-zero exit, wrong count of requests or bytes).
"""
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

CLIENT_ORDER = ["tern_cb", "tern_queued", "curl_epoll", "curl_poll", "hyper", "wrk"]
CLIENT_NAMES = {
    "tern_cb": "tern, callbacks on runtime threads",
    "tern_queued": "tern, queued delivery on the caller's thread",
    "curl_epoll": "libcurl multi, socket_action + epoll",
    "curl_poll": "libcurl multi, perform + poll",
    "hyper": "hyper-util client (plain Rust)",
    "wrk": "wrk (the server's ceiling)",
}
TERN = ["tern_cb", "tern_queued"]
CURL = ["curl_epoll", "curl_poll"]
GIB = 1024 ** 3
MIB = 1024 ** 2


def parse(path):
    meta, workloads, runs = {}, [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            kind, _, rest = line.partition(" ")
            fields = {}
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                fields[k] = v
            if kind == "META":
                meta.update(fields)
            elif kind == "WORKLOAD":
                workloads.append(fields)
            elif kind == "RUN":
                runs.append(fields)
    return meta, workloads, runs


def num(d, k, default=0.0):
    try:
        return float(d.get(k, default))
    except ValueError:
        return default


def valid(run, wl):
    """Why a run is not valid, or None."""
    if run.get("rc") != "0":
        return f"exit {run.get('rc')}" + (f": {run['error']}" if run.get("error") else "")
    if run["client"] == "wrk":
        return None if num(run, "rps") > 0 else "no rate"
    n = int(wl["requests"])
    if int(num(run, "ok")) != n or int(num(run, "failed")) != 0:
        return f"ok={run.get('ok')} failed={run.get('failed')} of {n}"
    want = n * int(wl["body"])
    if int(num(run, "bytes")) != want:
        return f"bytes={run.get('bytes')}, expected {want}"
    return None


def metric(run, wl):
    m = wl["metric"]
    if run["client"] == "wrk":
        return num(run, "rps")
    secs = num(run, "seconds")
    if m == "rps":
        return num(run, "requests") / secs if secs > 0 else 0.0
    if m == "mibps":
        return num(run, "bytes") / MIB / secs if secs > 0 else 0.0
    # mem: KiB of resident memory per request in flight, above the RSS after set-up.
    return (num(run, "maxrss_kib") - num(run, "base_rss_kib")) / num(run, "requests")


def cpu_per_unit(run, wl):
    cpu = num(run, "user_s") + num(run, "sys_s")
    if wl["metric"] == "mibps":
        b = num(run, "bytes")
        return cpu / (b / GIB) if b else 0.0
    return cpu * 10000 / num(run, "requests")


def higher_better(wl):
    return wl["metric"] != "mem"


def fmt(x):
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def med_range(xs, f=fmt):
    if not xs:
        return "-"
    if len(xs) == 1:
        return f(xs[0])
    return f"{f(statistics.median(xs))} ({f(min(xs))}-{f(max(xs))})"


def ratio_fmt(x):
    return f"{x:.2f}x"


def lib_sizes(meta):
    """(rows, notes): stripped sizes of libtern and of libcurl with its TLS library."""
    rows = []
    tern_lib = meta.get("tern_lib", "")
    curl_bin = meta.get("curl_bin", "")

    def ldd(path):
        try:
            out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return {}
        deps = {}
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                deps[parts[0]] = os.path.realpath(parts[2])
        return deps

    def stripped(path):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "lib")
            try:
                subprocess.run(["strip", "--strip-all", "-o", out, path], check=True,
                               capture_output=True)
                return os.path.getsize(out)
            except (OSError, subprocess.CalledProcessError):
                return os.path.getsize(path)

    def needed(path):
        try:
            out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True,
                                 check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return set()
        return {line.split("[", 1)[1].split("]", 1)[0]
                for line in out.splitlines() if "(NEEDED)" in line and "[" in line}

    system = ("libc.so", "libm.so", "libgcc_s.so", "ld-linux", "libpthread.so", "libdl.so",
              "librt.so", "linux-vdso")
    if os.path.exists(tern_lib):
        size = stripped(tern_lib)
        deps = sorted(needed(tern_lib))
        rows.append(("libtern.so (rustls + ring built in)", size,
                     "links only " + ", ".join(deps)))
    curl_lib = ldd(curl_bin).get("libcurl.so.4") if curl_bin else None
    if curl_lib:
        cdeps = ldd(curl_lib)
        # The TLS library libcurl itself links (not one a dependency of it brings).
        direct = needed(curl_lib)
        tls = [cdeps[k] for k in cdeps if k in direct and k.startswith(
            ("libssl.so", "libcrypto.so", "libgnutls.so", "libnss3.so", "libmbedtls.so",
             "libwolfssl.so"))]
        sizes = [stripped(curl_lib)] + [stripped(p) for p in tls]
        names = ", ".join(os.path.basename(p) for p in tls)
        rows.append((f"libcurl.so.4 + {names}", sum(sizes),
                     f"libcurl {fmt(sizes[0] / MIB)} MiB + TLS "
                     f"{fmt(sum(sizes[1:]) / MIB)} MiB"))
        others = [p for k, p in cdeps.items() if not k.startswith(system) and p not in tls]
        if others:
            total = sum(sizes) + sum(stripped(p) for p in others)
            rows.append(("libcurl.so.4 with every library it loads", total,
                         f"{len(others)} more: " + ", ".join(sorted(os.path.basename(p) for p in others))))
    return rows


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1:
        sys.exit(__doc__)
    meta, workloads, runs = parse(args[0])
    by_name = {w["name"]: w for w in workloads}
    out = []
    p = out.append

    failures = []
    # data[workload][client][round] = run
    data = {}
    for r in runs:
        wl = by_name.get(r["workload"])
        if wl is None:
            continue
        why = valid(r, wl)
        if why:
            failures.append(f"{r['client']} on {r['workload']} (round {r['round']}): {why}")
            continue
        data.setdefault(wl["name"], {}).setdefault(r["client"], {})[int(r["round"])] = r

    p(f"# tern benchmark, {meta.get('date', '')}")
    p("")
    p(f"- mode: {meta.get('mode')}, {meta.get('rounds')} round(s), every client on every "
      f"workload in turn, the order rotated each round; {meta.get('profile')} builds")
    p(f"- machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('mem')}, "
      f"Linux {meta.get('kernel')}; load average at start {meta.get('load_start')}, "
      f"at end {meta.get('load_end')} (other processes may have shared the CPUs: quote "
      f"medians and ratios, not single numbers)")
    p(f"- {meta.get('tern')}; {meta.get('curl')}; {meta.get('nginx')} (one worker, "
      f"TLS 1.3, no session resumption); {meta.get('wrk')}; {meta.get('rustc')}")
    p(f"- time: install {meta.get('time_install')} s, build {meta.get('time_build')} s, "
      f"benchmark {meta.get('time_bench')} s, total {meta.get('time_total')} s")
    p("")
    p("Each cell: the median over rounds (min-max). Ratios are taken round by round "
      "(a client against hyper, or against libcurl, in the same round), then their "
      "median (min-max). The libcurl baseline is the faster of its two drivers on "
      "that workload, named in the header. Connections: how many each run opened "
      "(min-max over rounds), counted by nginx (stub_status accepts).")
    p("")

    targets = []  # (workload, target, client, value text, met)
    for wl in workloads:
        name = wl["name"]
        rows = data.get(name, {})
        m = wl["metric"]
        unit = {"rps": "requests/s", "mibps": "MiB/s",
                "mem": "KiB per request in flight"}[m]
        if "--no-reuse" in wl.get("flags", ""):
            unit = "requests/s (= full handshakes/s)"
        per_unit = "CPU s / GiB" if m == "mibps" else "CPU s / 10k req"

        def series(client, f):
            return {rd: f(r, wl) for rd, r in rows.get(client, {}).items()}

        met = {c: series(c, metric) for c in rows}
        cpu = {c: series(c, cpu_per_unit) for c in rows if c != "wrk"}
        hb = higher_better(wl)

        # The libcurl baseline: the better median (for mem: the shorter wall time).
        base = None
        cands = [c for c in CURL if met.get(c)]
        if cands:
            if m == "mem":
                secs = {c: statistics.median(num(r, "seconds") for r in rows[c].values())
                        for c in cands}
                base = min(cands, key=lambda c: secs[c])
            else:
                base = max(cands, key=lambda c: statistics.median(met[c].values()))

        def ratios(c, ref, series_):
            if c not in series_ or ref not in series_:
                return []
            a, b = series_[c], series_[ref]
            return [a[rd] / b[rd] for rd in sorted(a) if rd in b and b[rd] > 0]

        p(f"## {name}: {wl.get('title', '')}")
        p("")
        p(f"{wl['requests']} requests, at most {wl['concurrency']} in flight"
          + (f", {wl['flags']}" if wl.get("flags") else "") + ".")
        p("")
        lower = " (lower is better)" if not hb else ""
        head = [f"client", f"{unit}{lower}", "x hyper", f"x libcurl ({base or '-'})"]
        if m == "mem":
            head.append("wall s")
        head += [per_unit, "peak RSS MiB", "connections"]
        p("| " + " | ".join(head) + " |")
        p("|" + "---|" * len(head))
        for c in CLIENT_ORDER:
            if c not in rows:
                continue
            vals = list(met[c].values())
            cells = [CLIENT_NAMES.get(c, c), med_range(vals)]
            if c == "wrk":
                cells += ["", ""]
            else:
                cells.append(med_range(ratios(c, "hyper", met), ratio_fmt) if c != "hyper" else "1")
                cells.append(med_range(ratios(c, base, met), ratio_fmt) if base and c != base
                             else ("1" if c == base else "-"))
            if m == "mem":
                cells.append(med_range([num(r, "seconds") for r in rows[c].values()]))
            if c == "wrk":
                cells += ["", "", wl["concurrency"]]
            else:
                cells.append(med_range(list(cpu[c].values())))
                cells.append(med_range([num(r, "maxrss_kib") / 1024 for r in rows[c].values()]))
                cs = [int(num(r, "conns")) for r in rows[c].values()]
                cells.append(str(cs[0]) if min(cs) == max(cs) else f"{min(cs)}-{max(cs)}")
            p("| " + " | ".join(cells) + " |")
        p("")

        # Targets for tern, relative to hyper in the same run.
        conc = int(wl["concurrency"])
        nreq = int(wl["requests"])
        for c in TERN:
            if c not in rows:
                continue
            if m in ("rps", "mibps") and "hyper" in rows:
                rs = ratios(c, "hyper", met)
                if rs:
                    r = statistics.median(rs)
                    lc = ratios(c, base, met) if base else []
                    extra = f"; {statistics.median(lc):.2f}x {base}" if lc else ""
                    targets.append((name, f"{'MiB/s' if m == 'mibps' else 'requests/s'} >= 0.9x hyper",
                                    c, f"{r:.2f}x hyper{extra}", r >= 0.9))
            if "hyper" in rows:
                rs = ratios(c, "hyper", cpu)
                if rs:
                    r = statistics.median(rs)
                    lc = ratios(c, base, cpu) if base else []
                    extra = f"; {statistics.median(lc):.2f}x {base}" if lc else ""
                    targets.append((name, f"{per_unit} <= 1.15x hyper", c,
                                    f"{r:.2f}x hyper{extra}", r <= 1.15))
            if m == "mem" and "hyper" in rows:
                mine = statistics.median(met[c].values())
                hyp = statistics.median(met["hyper"].values())
                targets.append((name, "KiB per request in flight <= hyper's + 1 KiB", c,
                                f"{mine:.2f} vs hyper {hyp:.2f}", mine <= hyp + 1.0))
                if base:
                    cb = statistics.median(met[base].values())
                    targets.append((name, f"KiB per request in flight <= libcurl's ({base})", c,
                                    f"{mine:.2f} vs {cb:.2f}", mine <= cb))
            conns = max(int(num(r, "conns")) for r in rows[c].values())
            limit = nreq if "--no-reuse" in wl.get("flags", "") else conc
            targets.append((name, f"connections <= {limit}", c, str(conns), conns <= limit))
            if "--http2" in wl.get("flags", ""):
                targets.append((name, "one HTTP/2 connection for every stream", c,
                                str(conns), conns == 1))

    p("## Targets (tern against the plain hyper client in the same run)")
    p("")
    p("| workload | target | client | measured (median) | met |")
    p("|---|---|---|---|---|")
    for name, t, c, v, ok in targets:
        p(f"| {name} | {t} | {c} | {v} | {'yes' if ok else '**no**'} |")
    missed = sum(1 for t in targets if not t[4])
    p("")
    p(f"{len(targets) - missed} of {len(targets)} targets met.")
    p("")

    sizes = lib_sizes(meta)
    if sizes:
        p("## Library size (stripped)")
        p("")
        p("| library | MiB | notes |")
        p("|---|---|---|")
        for n, s, note in sizes:
            p(f"| {n} | {s / MIB:.2f} | {note} |")
        p("")

    if failures:
        p("## Failed runs (left out of the tables)")
        p("")
        for f in failures:
            p(f"- {f}")
        p("")
    print("\n".join(out))
    if check and failures:
        for f in failures:
            print(f"bench: FAILED: {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
