#!/usr/bin/python3
"""Analysis for bench/queue/run.sh (issue 4): one run, or the summary of all runs.

One run (--dir RUNDIR): reads the loopback capture RUNDIR/cap.pcap, the sink's
dump files RUNDIR/sink/*, the server's log, and prints one block:

- accept time of each message: the capture timestamp of the server's
  "250 2.0.0 Ok: queued as QID" to smtp-source (posternd and Postfix both say so);
- delivery time: the server's connection to smtp-sink carries the message whose
  first Received: header says "(Postern|Postfix) with ESMTP id QID"; the sink's
  next "250 2.0.0" on that connection is the delivery (with more than 50
  recipients a message takes several transactions: the last one counts);
- msg/s end to end = messages / (last delivery - first accept);
- latency = delivery - accept per message, p50 / p99 / max in ms;
- checks: every message at the sink exactly once (dump files, distinct QIDs,
  recipients), the server's log (warnings, errors, deferrals);
- a cross-check from the server's own log: posternd's "outcome=queued" line
  (ms resolution) to the captured delivery; Postfix's delay= field (arrival at
  MAIL FROM to the end of the delivery, delay_logging_resolution_limit = 3).

Appends one tab-separated line to --results. --summary RESULTS prints every run,
the best end-to-end msg/s of each system and the ratio.
Only the Python standard library.
"""

import argparse
import datetime
import math
import os
import re
import struct
import sys

ACCEPT_RE = re.compile(rb"250[ -]2\.0\.0 Ok: queued as ([A-Za-z0-9]+)")
RECEIVED_RE = re.compile(rb"\((?:Postern|Postfix)\) with [A-Z]+ id ([A-Za-z0-9]+)")


def pcap_packets(path):
    """(time, sport, dport, payload) of every IPv4 TCP segment in a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise RuntimeError("%s: not a pcap file" % path)
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise RuntimeError("%s: unknown pcap magic %r" % (path, magic))
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0xFFFF
    l2 = {0: 4, 1: 14, 113: 16, 276: 20}.get(linktype)
    if l2 is None:
        raise RuntimeError("%s: unsupported link type %d" % (path, linktype))
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        ip = pkt[l2:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        if len(tcp) < 20:
            continue
        sport, dport = struct.unpack(">HH", tcp[:4])
        yield sec + frac / (1e9 if nano else 1e6), sport, dport, tcp[(tcp[12] >> 4) * 4:]


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)]


def stats_ms(values):
    v = sorted(x * 1000.0 for x in values)
    return {"n": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99),
            "max": v[-1] if v else float("nan"), "mean": sum(v) / len(v) if v else float("nan")}


def fmt_stats(s):
    return "p50 %.1f ms  p99 %.1f ms  max %.1f ms  mean %.1f ms  (%d messages)" % (
        s["p50"], s["p99"], s["max"], s["mean"], s["n"])


def parse_capture(path, port, sinkport):
    accept = {}     # qid -> time of the server's 250 to smtp-source
    delivered = {}  # qid -> time of the sink's 250 after the message's data
    deliveries = {}  # qid -> number of sink 250s (more than 1 = duplicate delivery)
    pending = {}    # server-side client port of a sink connection -> qid being sent
    for t, sport, dport, payload in pcap_packets(path):
        if sport == port:
            for q in ACCEPT_RE.findall(payload):
                accept.setdefault(q.decode(), t)
        elif dport == sinkport:
            m = RECEIVED_RE.search(payload)
            if m:
                pending[sport] = m.group(1).decode()
        elif sport == sinkport:
            q = pending.get(dport)
            if q is not None and b"250 2.0.0" in payload:
                delivered[q] = max(t, delivered.get(q, t))  # the last transaction of a split message
                deliveries[q] = deliveries.get(q, 0) + 1
                del pending[dport]
    return accept, delivered, deliveries


def parse_sink(sinkdir):
    files, qids, rcpts, unknown = 0, {}, 0, 0
    for name in os.listdir(sinkdir):
        with open(os.path.join(sinkdir, name), "rb") as f:
            head = f.read(8192)
        files += 1
        rcpts += head.count(b"\nX-Rcpt-Args:") + head.startswith(b"X-Rcpt-Args:")
        m = RECEIVED_RE.search(head)
        if m:
            q = m.group(1).decode()
            qids[q] = qids.get(q, 0) + 1
        else:
            unknown += 1
    return files, qids, rcpts, unknown


def log_time_iso(s):
    # 2026-11-22T15:18:54.123Z
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def posternd_log(path):
    """(qid -> time of its "outcome=queued" line, problem lines, counts)."""
    queued, problems = {}, []
    counts = {"sent": 0, "deferred": 0, "bounced": 0, "removed": 0}
    line_re = re.compile(r"^(\S+) (\w+) (\S+): (.*)$")
    with open(path, errors="replace") as f:
        for line in f:
            m = line_re.match(line)
            if not m:
                continue
            ts, level, comp, text = m.groups()
            if level in ("warn", "error"):
                problems.append(line.rstrip())
            if comp == "smtp" and text.endswith("outcome=queued"):
                q = re.search(r"qid=(\S+)", text)
                if q:
                    queued[q.group(1)] = log_time_iso(ts)
            elif comp == "queue":
                for k in ("sent", "deferred", "bounced"):
                    if "status=%s " % k in text:
                        counts[k] += 1
                        if k != "sent" and len(problems) < 200:
                            problems.append(line.rstrip())
                if text.endswith(" removed"):
                    counts["removed"] += 1
    return queued, problems, counts


def postfix_log(path):
    """(delay= values of status=sent lines, problem lines, counts)."""
    delays, problems = [], []
    counts = {"sent": 0, "deferred": 0, "bounced": 0, "removed": 0}
    with open(path, errors="replace") as f:
        for line in f:
            if re.search(r"\b(warning|error|fatal|panic):", line):
                problems.append(line.rstrip())
            m = re.search(r"status=(sent|deferred|bounced) ", line)
            if m:
                counts[m.group(1)] += 1
                if m.group(1) == "sent":
                    d = re.search(r"\bdelay=([0-9.]+)", line)
                    if d:
                        delays.append(float(d.group(1)))
                elif len(problems) < 200:
                    problems.append(line.rstrip())
            if line.rstrip().endswith(": removed"):
                counts["removed"] += 1
    return delays, problems, counts


def analyze_run(a):
    with open(os.path.join(a.dir, "ports")) as f:
        port, sinkport = (int(x) for x in f.read().split())
    accept, delivered, deliveries = parse_capture(os.path.join(a.dir, "cap.pcap"), port, sinkport)
    files, sink_qids, sink_rcpts, unknown = parse_sink(os.path.join(a.dir, "sink"))
    n = a.messages
    ok = True
    notes = []

    def check(cond, text):
        nonlocal ok
        if not cond:
            ok = False
            notes.append("FAILED: " + text)

    check(a.source_rc == 0, "smtp-source exited %d" % a.source_rc)
    check(len(accept) == n, "%d of %d 250 replies captured" % (len(accept), n))
    # Both servers send at most 50 recipients per transaction (posternd
    # recipients-per-attempt, Postfix smtp_destination_recipient_limit).
    per_msg = -(-a.rcpts // 50)
    check(files == n * per_msg, "%d sink files for %d messages (%d transaction(s) each)" % (files, n, per_msg))
    check(len(sink_qids) == n, "%d distinct queue ids at the sink" % len(sink_qids))
    dup_files = sum(max(0, c - per_msg) for c in sink_qids.values())
    check(dup_files == 0, "%d duplicate deliveries at the sink" % dup_files)
    check(unknown == 0, "%d sink files without the server's Received: header" % unknown)
    check(sink_rcpts == n * a.rcpts, "%d recipients at the sink, expected %d" % (sink_rcpts, n * a.rcpts))
    missing = [q for q in accept if q not in delivered]
    check(not missing, "%d accepted messages without a captured delivery (e.g. %s)" % (
        len(missing), ", ".join(missing[:3])))

    both = [q for q in accept if q in delivered]
    lat = stats_ms([delivered[q] - accept[q] for q in both])
    first = min(accept.values()) if accept else float("nan")
    last = max(delivered.values()) if delivered else float("nan")
    e2e = last - first
    rate = len(both) / e2e if both and e2e > 0 else 0.0
    src_time = a.source_end - a.source_start
    accept_rate = n / src_time if src_time > 0 else 0.0
    last_accept = max(accept.values()) if accept else float("nan")

    if a.system == "posternd":
        queued, problems, counts = posternd_log(os.path.join(a.dir, "posternd.log"))
        cross = stats_ms([delivered[q] - queued[q] for q in both if q in queued])
        cross_text = "log cross-check (\"outcome=queued\" line -> captured sink 250): " + fmt_stats(cross)
    else:
        delays, problems, counts = postfix_log(os.path.join(a.dir, "maillog"))
        cross = stats_ms(delays)
        cross_text = "log cross-check (Postfix delay=, MAIL FROM -> end of delivery): " + fmt_stats(cross)
    check(counts["sent"] == n * a.rcpts, "server logged %d status=sent of %d" % (counts["sent"], n * a.rcpts))
    check(counts["removed"] == n, "server logged %d removed of %d" % (counts["removed"], n))
    errors = [p for p in problems if re.search(r" error |\b(error|fatal|panic):", p)]
    check(not errors, "%d error line(s) in the server log" % len(errors))

    print("%-8s run %d: %s" % (a.system, a.run, "ok" if ok else "PROBLEMS"))
    print("  accepted %d in %.2f s by smtp-source (%.0f msg/s accept only)" % (len(accept), src_time, accept_rate))
    print("  end to end: first 250 -> last delivery %.3f s = %.0f msg/s (last delivery %.3f s after the last 250)" % (
        e2e, rate, last - last_accept))
    print("  latency 250 -> sink 250: " + fmt_stats(lat))
    print("  " + cross_text)
    print("  sink: %d files, %d distinct ids, %d recipients; log: %d sent, %d deferred, %d bounced, %d removed" % (
        files, len(sink_qids), sink_rcpts, counts["sent"], counts["deferred"], counts["bounced"], counts["removed"]))
    cpu_user, cpu_sys = (float(x) for x in a.cpu.split(","))
    cpu = cpu_user + cpu_sys
    print("  server CPU (all its processes) during the run: user %.2f s + system %.2f s = %.2f ms per message" % (
        cpu_user, cpu_sys, cpu * 1000.0 / n))
    for note in notes:
        print("  " + note)
    if problems:
        print("  %d warning/error/deferral line(s) in the server log, first ones:" % len(problems))
        for p in problems[:10]:
            print("    " + p)
    sys.stdout.flush()
    with open(a.results, "a") as f:
        f.write("\t".join(str(x) for x in (a.system, a.run, "ok" if ok else "problems", "%.3f" % rate,
                                           "%.3f" % accept_rate, "%.2f" % lat["p50"], "%.2f" % lat["p99"],
                                           "%.2f" % lat["max"], "%.3f" % (cpu * 1000.0 / n))) + "\n")


def summary(path):
    runs = []
    with open(path) as f:
        for line in f:
            s, r, ok, rate, arate, p50, p99, mx, cpu = line.rstrip("\n").split("\t")
            runs.append((s, int(r), ok, float(rate), float(arate), float(p50), float(p99), float(mx), float(cpu)))
    print()
    print("| run | system | status | end-to-end msg/s | accept-only msg/s | p50 ms | p99 ms | max ms | CPU ms/msg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, r, ok, rate, arate, p50, p99, mx, cpu in runs:
        print("| %d | %s | %s | %.0f | %.0f | %.1f | %.1f | %.1f | %.2f |" % (r, s, ok, rate, arate, p50, p99, mx, cpu))
    best = {}
    for run in runs:
        if run[2] == "ok" and (run[0] not in best or run[3] > best[run[0]][3]):
            best[run[0]] = run
    print()
    for s in ("posternd", "postfix"):
        if s in best:
            b = best[s]
            print("best %-8s %6.0f msg/s end to end (run %d), latency p50 %.1f ms, p99 %.1f ms" % (s, b[3], b[1], b[5], b[6]))
        else:
            print("best %-8s no run without problems" % s)
    if "posternd" in best and "postfix" in best and best["postfix"][3] > 0:
        print("ratio posternd / Postfix (end-to-end msg/s): %.2f  (goal >= 2)" % (best["posternd"][3] / best["postfix"][3]))
    if any(run[2] != "ok" for run in runs):
        print("some runs had problems: see above")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--summary")
    p.add_argument("--system", choices=("posternd", "postfix"))
    p.add_argument("--run", type=int)
    p.add_argument("--dir")
    p.add_argument("--messages", type=int)
    p.add_argument("--rcpts", type=int)
    p.add_argument("--source-start", type=float)
    p.add_argument("--source-end", type=float)
    p.add_argument("--source-rc", type=int)
    p.add_argument("--cpu", default="nan,nan", help="USER,SYS CPU seconds of the server during the run")
    p.add_argument("--results")
    a = p.parse_args()
    if a.summary:
        return summary(a.summary)
    if not (a.system and a.dir and a.messages and a.rcpts and a.results):
        p.error("--system, --dir, --messages, --rcpts and --results are needed for one run")
    analyze_run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
