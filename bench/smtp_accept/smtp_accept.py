#!/usr/bin/python3
"""SMTP accept benchmark (issue 3), driven by bench/smtp_accept/run.sh.

One run: starts posternd (durable spool, no plugins) and a private stock Postfix
(config dir, queue and data dir under one temp dir; /etc/postfix is not touched),
runs Postfix's smtp-source against each (one connection per message, then -d),
checks that every message was accepted durably, measures posternd's RSS per idle
connection, stops both by PID and removes the temp dir.
Method: bench/smtp_accept/README.md. Only the Python standard library.

Environment: BUILD_DIR (or argv[1], default build/), MESSAGES (2000), SESSIONS (20),
SIZE (1024), IDLE (5000), KEEP_TMP=1 keeps the temp dir.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MESSAGES = int(os.environ.get("MESSAGES", "2000"))
SESSIONS = int(os.environ.get("SESSIONS", "20"))
SIZE = int(os.environ.get("SIZE", "1024"))
IDLE = int(os.environ.get("IDLE", "5000"))
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# Exactly the settings of ../shared/docs/smtp-peers.md, plus the private directories.
POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
myhostname = mx.eval.test
mydomain = eval.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination = $myhostname, localhost, eval.test
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_transport = discard:local
default_transport = discard:remote
relay_transport = discard:relay
virtual_transport = discard:virtual
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
maillog_file = {maillog}
maillog_file_prefixes = {prefix}
default_process_limit = 100
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
"""

POSTERN_MANIFEST = """\
<?xml version="1.0"?>
<postern>
  <server name="mx.bench.test" data-dir="{data}"/>
  <log level="info" file="{log}"/>
  <plugin-dirs></plugin-dirs>
  <listeners>
    <listener name="smtp" protocol="smtp" address="127.0.0.1" port="{port}" tls="none"/>
  </listeners>
  <smtp max-sessions="{max_sessions}" max-sessions-per-ip="{max_sessions}" max-messages-per-session="100000">
    <local-domain>eval.test</local-domain>
    <trusted-network>127.0.0.1/32</trusted-network>
  </smtp>
  <plugins>
  </plugins>
</postern>
"""


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)  # the banner: the session really started
                s.sendall(b"QUIT\r\n")
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open in %ss" % (port, timeout))


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def smtp_source(port, reuse):
    args = [SMTP_SOURCE] + (["-d"] if reuse else []) + [
        "-s", str(SESSIONS), "-m", str(MESSAGES), "-l", str(SIZE),
        "-f", "a@eval.test", "-t", "b@eval.test", "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed (%d): %s" % (r.returncode, r.stdout.decode(errors="replace")))
    return elapsed


class Posternd:
    def __init__(self, build_dir, tmp):
        self.binary = os.path.join(build_dir, "bin", "posternd")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("no posternd at %s (build it or pass the build dir)" % self.binary)
        self.dir = os.path.join(tmp, "postern")
        self.data = os.path.join(self.dir, "var")
        self.log = os.path.join(self.dir, "posternd.log")
        self.port = free_port()
        self.proc = None

    def incoming(self):
        d = os.path.join(self.data, "queue", "incoming")
        return len(os.listdir(d)) if os.path.isdir(d) else 0

    def start(self):
        os.makedirs(self.dir)
        manifest = os.path.join(self.dir, "postern.xml")
        with open(manifest, "w") as f:
            f.write(POSTERN_MANIFEST.format(data=self.data, log=self.log, port=self.port,
                                            max_sessions=IDLE + 1000))
        self.out = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([self.binary, "--config", manifest, "--foreground"],
                                     stdout=self.out, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.port, self.proc)

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


class Postfix:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "postfix")
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = free_port()
        self.master_pid = None

    def start(self):
        os.makedirs(self.conf)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        shutil.chown(self.data, "postfix", "postfix")  # master.lock lives here
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(queue=self.queue, data=self.data, maillog=self.maillog,
                                           prefix=os.path.dirname(self.dir)))
        # master.cf: the stock one with the smtp inet line replaced (chroot off), as in smtp-peers.md.
        with open("/etc/postfix/master.cf") as f:
            lines = f.read().split("\n")
        out, replaced = [], False
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "smtp" and fields[1] == "inet":
                line = "127.0.0.1:%d inet n - n - - smtpd" % self.port
                replaced = True
            out.append(line)
        if not replaced:
            raise RuntimeError("no 'smtp inet' line in /etc/postfix/master.cf")
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(out))
        r = subprocess.run([POSTFIX, "-c", self.conf, "start"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        if r.returncode != 0 or not os.path.exists(pidfile):
            raise RuntimeError("postfix start failed: %s\n%s" % (r.stdout.decode(errors="replace"), self.log_tail()))
        with open(pidfile) as f:
            self.master_pid = int(f.read().split()[0])
        wait_port(self.port)

    def log_tail(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def count(self, word):
        try:
            with open(self.maillog, errors="replace") as f:
                return sum(1 for line in f if word in line)
        except OSError:
            return 0

    def accepted(self):
        """Messages cleanup(8) committed to the queue (fsync before smtpd's 250)."""
        return self.count(": message-id=")

    def wait_drained(self, expected, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(": removed") >= expected:
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        if self.master_pid is None:
            return
        try:
            os.kill(self.master_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(self.master_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(self.master_pid, signal.SIGKILL)
        self.master_pid = None


def count_sessions(server):
    """Established TCP connections to the server's port (from /proc/net/tcp)."""
    port_hex = ":%04X" % server.port
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(port_hex) and fields[3] == "01":
                n += 1
    return n


def idle_connections(server):
    """RSS per idle connection: (RSS with IDLE sessions open - RSS before) / IDLE."""
    before = vm_rss_kb(server.proc.pid)
    socks = []
    try:
        for i in range(IDLE):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if not s.recv(512).startswith(b"220"):
                raise RuntimeError("connection %d: no 220 banner" % i)
            socks.append(s)
        time.sleep(1.0)
        with_open = vm_rss_kb(server.proc.pid)
        # Still all alive?
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.recv(512)
        s.close()
    finally:
        for s in socks:
            s.close()
    return before, with_open


def main():
    build_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + 2000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    tmp = tempfile.mkdtemp(prefix="postern-bench-")
    os.chmod(tmp, 0o755)  # Postfix daemons (user postfix) must reach their queue
    pd, pf = Posternd(build_dir, tmp), Postfix(tmp)
    results = {}
    try:
        log("date: %s  cores: %d  messages: %d x %d B, %d sessions" % (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(), MESSAGES, SIZE, SESSIONS))
        pd.start()
        # Idle connections first, on a fresh daemon: memory freed by the throughput
        # runs would otherwise be reused by the sessions and hide their cost.
        before, with_open = idle_connections(pd)
        per = (with_open - before) * 1024 / IDLE
        idle_line = "idle     %d connections: VmRSS %d kB -> %d kB, %.1f KB (%.0f bytes) per connection" % (
            IDLE, before, with_open, per / 1024, per)
        log(idle_line)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and count_sessions(pd) > 0:
            time.sleep(0.2)
        pf.start()
        log("posternd pid %d port %d; postfix master pid %d port %d" % (pd.proc.pid, pd.port, pf.master_pid, pf.port))

        def run_posternd(reuse, mode):
            n0 = pd.incoming()
            t = smtp_source(pd.port, reuse)
            got = pd.incoming() - n0
            if got != MESSAGES:
                raise RuntimeError("posternd: %d of %d messages in the spool" % (got, MESSAGES))
            log("posternd %-10s %6.2f s  %7.0f msg/s  (%d spooled)" % (mode, t, MESSAGES / t, got))
            return MESSAGES / t

        def run_postfix(reuse, mode):
            a0 = pf.accepted()
            t = smtp_source(pf.port, reuse)
            deadline = time.monotonic() + 30
            while pf.accepted() - a0 < MESSAGES and time.monotonic() < deadline:
                time.sleep(0.1)
            got = pf.accepted() - a0
            if got != MESSAGES:
                raise RuntimeError("postfix: %d of %d messages queued\n%s" % (got, MESSAGES, pf.log_tail()))
            # Drained before the next run, so that runs never overlap.
            if not pf.wait_drained(pf.accepted()):
                log("warning: postfix queue not drained after 60 s")
            log("postfix  %-10s %6.2f s  %7.0f msg/s  (%d queued)" % (mode, t, MESSAGES / t, got))
            return MESSAGES / t

        # Each mode twice, in the order A B B A, and the better run of each counts:
        # file creation on ext4 gets slower right after many deletions (the previous
        # run's clean-up, Postfix's own queue), which would otherwise always hit
        # whoever runs first.
        for reuse in (False, True):
            mode = "reuse (-d)" if reuse else "conn/msg"
            a = run_posternd(reuse, mode)
            b = run_postfix(reuse, mode)
            b = max(b, run_postfix(reuse, mode))
            a = max(a, run_posternd(reuse, mode))
            results[("posternd", reuse)] = a
            results[("postfix", reuse)] = b
        pf.stop()
        for reuse in (False, True):
            mode = "reuse (-d)" if reuse else "conn/msg"
            a, b = results[("posternd", reuse)], results[("postfix", reuse)]
            log("best     %-10s posternd %7.0f msg/s  postfix %7.0f msg/s  ratio %.2f" % (mode, a, b, a / b))
        log(idle_line)
    finally:
        pd.stop()
        pf.stop()
        if os.environ.get("KEEP_TMP"):
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
