#!/usr/bin/python3
"""Filter benchmark (issue 8), driven by bench/filters/run.sh.

One run, same machine, same binary: posternd without filter plugins, and
posternd with dnsbl (3 lists on a real unbound, warm cache) and, when it is
built, greylist; Postfix's smtp-source against each, in alternating rounds
(baseline, filters, baseline, filters, ...) so that load from other processes
hits both alike. Method and figures: bench/filters/README.md.

Environment: BUILD_DIR (or argv[1], default build/), MESSAGES (2000), SESSIONS
(20), SIZE (1024), ROUNDS (3), KEEP_TMP=1 keeps the temp dir, NO_GREYLIST=1
leaves greylist out, GREYLIST_XML replaces its <plugin> element.
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from dnsserver import DnsServer  # noqa: E402

MESSAGES = int(os.environ.get("MESSAGES", "2000"))
SESSIONS = int(os.environ.get("SESSIONS", "20"))
SIZE = int(os.environ.get("SIZE", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"

# Three lists, as a production setup would run them: two on the client address
# (connect) and one on the sender domain (mail_from). The client, 127.0.0.1, is
# listed on none: every message costs three lookups, answered NXDOMAIN (cached
# for the negative TTL after the first).
ZONES = {
    "zen.bench.test": ["1.0.0.127.zen.bench.test. 300 IN TXT \"unused\"",
                       "2.0.0.127.zen.bench.test. 300 IN A 127.0.0.2"],
    "bl.bench.test": ["2.0.0.127.bl.bench.test. 300 IN A 127.0.0.2"],
    "dbl.bench.test": ["spam.example.dbl.bench.test. 300 IN A 127.0.1.2"],
}
# 1.0.0.127.zen... has a TXT only: A queries get NODATA (cached like NXDOMAIN).

DNSBL_XML = """
      <list zone="zen.bench.test" action="reject" timeout="2s"/>
      <list zone="bl.bench.test" action="score" symbol="BL_BENCH" weight="2" timeout="2s"/>
      <list zone="dbl.bench.test" type="rhs" helo="true" action="reject" timeout="2s"/>
"""

MANIFEST = """\
<?xml version="1.0"?>
<postern>
  <server name="mx.bench.test" data-dir="{data}"/>
  <log level="info" file="{log}"/>
  <plugin-dirs><dir>{plugin_dir}</dir></plugin-dirs>
  {dns}
  <listeners>
    <listener name="smtp" protocol="smtp" address="127.0.0.1" port="{port}" tls="none"/>
  </listeners>
  <smtp max-sessions="2000" max-sessions-per-ip="2000" max-messages-per-session="100000" tarpit-after="100000">
    <local-domain>eval.test</local-domain>
    <trusted-network>127.0.0.1/32</trusted-network>
  </smtp>
  <plugins>
{plugins}
  </plugins>
</postern>
"""


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("posternd exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)
                s.sendall(b"QUIT\r\n")
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open in %ss" % (port, timeout))


def smtp_source(port, reuse, messages, sessions=SESSIONS):
    args = [SMTP_SOURCE] + (["-d"] if reuse else []) + [
        "-s", str(sessions), "-m", str(messages), "-l", str(SIZE),
        "-f", "a@eval.test", "-t", "b@eval.test", "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed (%d): %s" % (r.returncode, r.stdout.decode(errors="replace")))
    return elapsed


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# greylist on its whitelist path (plugins/greylist/README.md): the client
# network is allowed with `posternctl greylist allow` once the daemon runs, so
# each RCPT costs the plugin's whitelist check (in-memory cache, one SQLite
# query per minute per network) and the bench traffic passes.
GREYLIST_XML = '<plugin name="greylist" enabled="true" delay="5m"/>'


class Posternd:
    def __init__(self, build_dir, tmp, name, plugins_xml, dns_xml):
        self.binary = os.path.join(build_dir, "bin", "posternd")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("no posternd at %s" % self.binary)
        self.plugin_dir = os.path.join(build_dir, "plugins")
        self.dir = os.path.join(tmp, name)
        self.data = os.path.join(self.dir, "var")
        self.log = os.path.join(self.dir, "posternd.log")
        self.port = free_port()
        self.plugins_xml = plugins_xml
        self.dns_xml = dns_xml
        self.proc = None

    def incoming(self):
        d = os.path.join(self.data, "queue", "incoming")
        return len(os.listdir(d)) if os.path.isdir(d) else 0

    def start(self):
        os.makedirs(self.dir)
        manifest = self.manifest = os.path.join(self.dir, "postern.xml")
        with open(manifest, "w") as f:
            f.write(MANIFEST.format(data=self.data, log=self.log, port=self.port, plugin_dir=self.plugin_dir,
                                    dns=self.dns_xml, plugins=self.plugins_xml))
        self.out = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([self.binary, "--config", manifest, "--foreground"],
                                     stdout=self.out, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.port, self.proc)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.out.close()


def main():
    build_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BUILD_DIR",
                                                                                    os.path.join(ROOT, "build")))
    if not os.path.exists(SMTP_SOURCE):
        raise SystemExit("smtp-source not found (apt-get install postfix)")
    if not os.path.exists(os.path.join(build_dir, "plugins", "dnsbl.so")):
        raise SystemExit("no dnsbl.so in %s/plugins (ninja dnsbl)" % build_dir)
    tmp = tempfile.mkdtemp(prefix="postern-bench-filters-")
    dns = DnsServer(ZONES)
    servers = []
    try:
        dns.start()
        dns_xml = dns.manifest_xml()
        plugins = ['    <plugin name="dnsbl" enabled="true" timeout="5s" on-failure="continue">%s</plugin>'
                   % DNSBL_XML]
        have_grey = (os.path.exists(os.path.join(build_dir, "plugins", "greylist.so")) and
                     os.access(os.path.join(build_dir, "bin", "posternctl"), os.X_OK) and
                     not os.environ.get("NO_GREYLIST"))
        if have_grey:
            plugins.append("    " + os.environ.get("GREYLIST_XML", GREYLIST_XML))
        base = Posternd(build_dir, tmp, "baseline", "", dns_xml)
        filt = Posternd(build_dir, tmp, "filters", "\n".join(plugins), dns_xml)
        servers = [base, filt]
        for s in servers:
            s.start()
        if "dnsbl: started" not in filt.log_text():
            raise RuntimeError("dnsbl did not start:\n" + filt.log_text()[-3000:])
        if have_grey:
            r = subprocess.run([os.path.join(build_dir, "bin", "posternctl"), "--config", filt.manifest,
                                "greylist", "allow", "127.0.0.0/8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError("posternctl greylist allow failed: %s" % r.stdout.decode(errors="replace"))
        log("posternd %s; dnsbl: 3 lists on unbound %s; greylist: %s" %
            (base.binary, dns.address, "enabled" if have_grey else "not built/configured (dnsbl only)"))

        # Warm-up: fills the caches (DNS answers, greylist whitelist) before timing.
        for s in servers:
            smtp_source(s.port, False, 200, 10)

        results = {("baseline", False): [], ("filters", False): [], ("baseline", True): [], ("filters", True): []}
        cpu_us = {k: [] for k in results}
        for rnd in range(ROUNDS):
            for reuse in (False, True):
                # Alternate who goes first, so a burst of outside load hits both alike.
                pair = [("baseline", base), ("filters", filt)]
                for name, s in (pair if rnd % 2 == 0 else pair[::-1]):
                    before = s.incoming()
                    cpu0 = cpu_seconds(s.proc.pid)
                    t = smtp_source(s.port, reuse, MESSAGES)
                    # Every message accepted and on disk before it counts.
                    deadline = time.monotonic() + 30
                    while s.incoming() - before < MESSAGES and time.monotonic() < deadline:
                        time.sleep(0.05)
                    got = s.incoming() - before
                    if got < MESSAGES:
                        raise RuntimeError("%s: only %d of %d messages spooled" % (name, got, MESSAGES))
                    cpu = (cpu_seconds(s.proc.pid) - cpu0) / MESSAGES * 1e6
                    results[(name, reuse)].append(MESSAGES / t)
                    cpu_us[(name, reuse)].append(cpu)
                    log("round %d %-8s %-22s %6.0f msg/s (%.2f s)  posternd CPU %4.0f us/msg" %
                        (rnd + 1, name, "-d (reuse connection)" if reuse else "connection per message",
                         MESSAGES / t, t, cpu))
        hits = filt.log_text().count("dnsbl: hit ")
        if hits:
            raise RuntimeError("the bench client was listed %d times; fix the zones" % hits)
        log("")
        log("| mode | baseline msg/s median (min-max) | dnsbl%s msg/s median (min-max) | slower by (median) | slower by (best) |" %
            (" + greylist" if have_grey else ""))
        log("|---|---|---|---|---|")
        for reuse in (False, True):
            bs, fs = results[("baseline", reuse)], results[("filters", reuse)]
            b, f = statistics.median(bs), statistics.median(fs)
            log("| %s | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.1f %% | %.1f %% |" % (
                "-d (reuse connection)" if reuse else "connection per message", b, min(bs), max(bs), f, min(fs),
                max(fs), 100.0 * (b - f) / b, 100.0 * (max(bs) - max(fs)) / max(bs)))
        log("")
        log("| mode | baseline posternd CPU us/msg (median) | with filters | more CPU per message |")
        log("|---|---|---|---|")
        for reuse in (False, True):
            b = statistics.median(cpu_us[("baseline", reuse)])
            f = statistics.median(cpu_us[("filters", reuse)])
            log("| %s | %.0f | %.0f | %.1f %% |" % ("-d (reuse connection)" if reuse else "connection per message",
                                                  b, f, 100.0 * (f - b) / b))
        with open("/proc/loadavg") as la:
            log("load average during the run: %s" % " ".join(la.read().split()[:3]))
    finally:
        for s in servers:
            s.stop()
        dns.stop()
        if os.environ.get("KEEP_TMP"):
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
