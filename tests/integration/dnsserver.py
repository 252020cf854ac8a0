"""A real DNS server for integration tests: unbound on 127.0.0.1 with test zones.

    from dnsserver import DnsServer

    dns = DnsServer({
        "mx.test": [
            "mx.test. 300 IN MX 10 mail.mx.test.",
            "mail.mx.test. 300 IN A 127.0.0.1",
        ],
        "nullmx.test": ["nullmx.test. 300 IN MX 0 ."],
        "zen.bl.test": ["2.0.0.127.zen.bl.test. 60 IN A 127.0.0.2",
                        "2.0.0.127.zen.bl.test. 60 IN TXT \"listed\""],
    }, dead_zones=["dead.bl.test"])
    dns.start()
    ...  Daemon(extra_xml=dns.manifest_xml())  # <dns><server>127.0.0.1:PORT</server></dns>
    dns.stop()

Each key of `zones` becomes an authoritative `local-zone: static` of unbound:
names in it that have no record get NXDOMAIN, exactly like a real DNSBL
answers for an address that is not listed. Record lines are zone-file syntax
(owner TTL IN TYPE RDATA) with absolute owner names. Every name outside the
zones is REFUSED (the test server never recurses to the Internet).

`dead_zones` never answer: unbound forwards them to a UDP socket that this
class holds open and reads without replying (a "list that never answers";
no ICMP error, so clients really wait for their timeout).

The server is started by the test and stopped by PID (stop()), and runs in
the foreground of its own process group; its log is in `dir/unbound.log`.
Needs the Debian package `unbound` (scripts/deps.sh installs it).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def _free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for the DNS server")


def _quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DnsServer:
    def __init__(self, zones, dead_zones=(), ttl=300):
        self.zones = {z.rstrip(".").lower(): list(rrs) for z, rrs in zones.items()}
        self.dead_zones = [z.rstrip(".").lower() for z in dead_zones]
        self.ttl = ttl
        self.dir = tempfile.mkdtemp(prefix="postern-dns-")
        self.port = None
        self.proc = None
        self._sink = None
        self._sink_thread = None
        self._stopping = False

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def manifest_xml(self, timeout="2s"):
        """The <dns> element that points posternd's resolver at this server."""
        return '<dns timeout="%s"><server>%s</server></dns>' % (timeout, self.address)

    # -- lifecycle ---------------------------------------------------------
    def _config(self):
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: %d" % self.port,
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            "  directory: %s" % _quote(self.dir),
            "  pidfile: %s" % _quote(os.path.join(self.dir, "unbound.pid")),
            "  logfile: %s" % _quote(os.path.join(self.dir, "unbound.log")),
            "  use-syslog: no",
            "  verbosity: 1",
            "  do-ip6: no",
            "  do-ip4: yes",
            "  do-udp: yes",
            "  do-tcp: yes",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            "  do-not-query-localhost: no",
            '  module-config: "iterator"',
            "  qname-minimisation: no",
            "  harden-referral-path: no",
            "  prefetch: no",
            "  outgoing-range: 64",
            "  so-reuseport: no",
            '  local-zone: "." refuse',
        ]
        for zone, rrs in self.zones.items():
            lines.append("  local-zone: %s static" % _quote(zone + "."))
            for rr in rrs:
                # unbound does not unescape \" inside "...": a record with quotes
                # (TXT) goes in single quotes, verbatim.
                lines.append("  local-data: '%s'" % rr if '"' in rr else "  local-data: %s" % _quote(rr))
        for zone in self.dead_zones:
            # transparent: not answered locally, so the stub below is asked.
            lines.append("  local-zone: %s transparent" % _quote(zone + "."))
        for zone in self.dead_zones:
            lines += [
                "stub-zone:",
                "  name: %s" % _quote(zone + "."),
                "  stub-addr: 127.0.0.1@%d" % self._sink.getsockname()[1],
            ]
        lines += ["remote-control:", "  control-enable: no"]
        return "\n".join(lines) + "\n"

    def _swallow(self):
        # Reads queries for the dead zones and never answers them.
        self._sink.settimeout(0.2)
        while not self._stopping:
            try:
                self._sink.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return

    def start(self):
        if not os.path.exists(UNBOUND):
            raise RuntimeError("unbound is not installed (apt-get install unbound)")
        self.port = _free_udp_tcp_port()
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sink.bind(("127.0.0.1", 0))
        self._sink_thread = threading.Thread(target=self._swallow, daemon=True)
        self._sink_thread.start()
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write(self._config())
        check = subprocess.run([UNBOUND + "-checkconf", conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("unbound-checkconf: %s%s" % (check.stdout, check.stderr))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited with %s: %s" % (self.proc.returncode, self.log()))
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("unbound did not answer within 10 s: %s" % self.log())

    def _answers(self):
        """Whether the server answers a query (any answer) over UDP."""
        q = _build_query("probe.invalid", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", self.port))
                s.recvfrom(4096)
                return True
            except OSError:
                return False

    def query(self, name, rtype="A"):
        """(rcode, answer_count) for a query, to check the zones from a test."""
        code = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28}[rtype]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(_build_query(name, code), ("127.0.0.1", self.port))
            data, _ = s.recvfrom(4096)
        return data[3] & 0x0F, int.from_bytes(data[6:8], "big")

    def log(self):
        try:
            with open(os.path.join(self.dir, "unbound.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        self._stopping = True
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._sink:
            self._sink.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _build_query(name, qtype):
    header = os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    return header + qname + qtype.to_bytes(2, "big") + b"\x00\x01"
