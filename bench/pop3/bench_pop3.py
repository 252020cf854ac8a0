#!/usr/bin/python3
"""POP3 load: posternd's pop3 plugin against a private Dovecot (dovecot-pop3d)
in the same run, same machine, same messages, same client.

Each round fills U mailboxes with M messages, then U concurrent clients each
run one session: USER/PASS, STAT, RETR every message, DELE it, QUIT (the
UPDATE state removes them). Reported: messages retrieved and deleted per
second for both servers and the ratio; then the memory per idle connection
(K connections that got the greeting, and U logged-in sessions): RSS and PSS
summed over the server's processes, before and after, divided by K.

    bench/pop3/run.sh [build-dir]      (or: bench_pop3.py --build build)

Not a CTest test. Needs dovecot-pop3d (Debian) and a built posternd.
"""

import argparse
import asyncio
import os
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_message(i, size):
    head = ("From: load@outside.example\r\nTo: user@bench.test\r\nSubject: load %d\r\n"
            "Message-ID: <load-%d@outside.example>\r\n\r\n" % (i, i))
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return (head + body + "\r\n").encode()


# -- memory -------------------------------------------------------------------
def process_tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def memory_kb(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


# -- client -------------------------------------------------------------------
async def session(port, user, password):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)

    async def line():
        l = await reader.readuntil(b"\r\n")
        if not l.startswith(b"+"):
            raise RuntimeError("%s: %r" % (user, l))
        return l

    async def cmd(c):
        writer.write(c)
        return await line()

    await line()
    await cmd(b"USER %s\r\n" % user.encode())
    await cmd(b"PASS %s\r\n" % password.encode())
    count = int((await cmd(b"STAT\r\n")).split()[1])
    octets = 0
    for n in range(1, count + 1):
        await cmd(b"RETR %d\r\n" % n)
        body = await reader.readuntil(b"\r\n.\r\n")
        octets += len(body)
        await cmd(b"DELE %d\r\n" % n)
    await cmd(b"QUIT\r\n")
    writer.close()
    return count, octets


async def load(port, users, password):
    t0 = time.monotonic()
    results = await asyncio.gather(*(session(port, u, password) for u in users))
    elapsed = time.monotonic() - t0
    return sum(r[0] for r in results), sum(r[1] for r in results), elapsed


async def idle(port, k, users=(), password=""):
    conns = []
    for _ in range(k):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readuntil(b"\r\n")
        conns.append((r, w))
    for u in users:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readuntil(b"\r\n")
        w.write(b"USER %s\r\nPASS %s\r\n" % (u.encode(), password.encode()))
        await r.readuntil(b"\r\n")
        l = await r.readuntil(b"\r\n")
        if not l.startswith(b"+OK"):
            raise RuntimeError(l)
        conns.append((r, w))
    return conns


def measure_idle(pid, port, k, users, password):
    loop = asyncio.new_event_loop()
    base = memory_kb(process_tree(pid))
    conns = loop.run_until_complete(idle(port, k))
    time.sleep(1.0)
    after_k = memory_kb(process_tree(pid))
    more = loop.run_until_complete(idle(port, 0, users, password))
    time.sleep(1.0)
    after_u = memory_kb(process_tree(pid))
    for _, w in conns + more:
        w.close()
    loop.run_until_complete(asyncio.sleep(0.5))
    loop.close()
    per_k = ((after_k[0] - base[0]) / k, (after_k[1] - base[1]) / k)
    per_u = ((after_u[0] - after_k[0]) / len(users), (after_u[1] - after_k[1]) / len(users))
    return base, per_k, per_u


# -- posternd -----------------------------------------------------------------
class Postern:
    def __init__(self, build, users, password):
        sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
        os.environ.setdefault("POSTERN_BINARY_DIR", build)
        os.environ.setdefault("POSTERN_BIN_DIR", os.path.join(build, "bin"))
        import harness  # noqa: E402

        self.harness = harness
        self.users = users
        self.password = password
        extra = ('<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>'
                 '<queue retry="1h" delay-warning="0" destination-backoff="0"/>')
        self.d = harness.Daemon(smtp_xml="<local-domain>bench.test</local-domain>",
                                smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0", "max-recipients": "10000",
                                           "max-messages-per-session": "100000"},
                                listeners=[{"name": "smtp", "protocol": "smtp", "tls": "none"},
                                           {"name": "pop3", "protocol": "pop3", "tls": "none", "max-connections": "20000",
                                            "cleartext-auth": "true"}],
                                plugins=[("pop3", "")], extra_xml=extra, deliver=True, log_level="warn",
                                plugin_dirs=[os.path.join(build, "plugins")])
        with open(self.d.config_path, "w") as f:
            f.write(self.d.manifest())
        for u in users:
            p = subprocess.run([os.path.join(harness.BIN_DIR, "posternctl"), "--config", self.d.config_path,
                                "user", "add", u, "--password-stdin"], input=password + "\n", text=True,
                               capture_output=True)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
        self.d.start()
        self.port = self.d.port("pop3")

    @property
    def pid(self):
        return self.d.proc.pid

    def count(self, user):
        local, domain = user.split("@")
        idx = os.path.join(self.d.data_dir, "mail", domain, local, "index.sqlite")
        if not os.path.exists(idx):
            return 0
        db = sqlite3.connect("file:%s?mode=ro" % idx, uri=True, timeout=10)
        try:
            row = db.execute("SELECT COUNT(*) FROM messages m JOIN folders f ON f.id = m.folder_id "
                             "WHERE f.name = 'INBOX'").fetchone()
            return row[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()

    def fill(self, messages):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=60) as s:
            for m in messages:
                s.sendmail("load@outside.example", self.users, m)
        end = time.time() + 300
        while any(self.count(u) < len(messages) for u in self.users):
            if time.time() > end:
                raise RuntimeError("delivery did not finish:\n" + self.d.log()[-2000:])
            time.sleep(0.2)

    def stop(self):
        self.d.stop()


# -- dovecot ------------------------------------------------------------------
class Dovecot:
    def __init__(self, users, password):
        self.dir = tempfile.mkdtemp(prefix="bench-dovecot-")
        os.chmod(self.dir, 0o755)
        self.users = users
        self.port = free_port()
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for u in users:
                f.write("%s:{PLAIN}%s::::::\n" % (u, password))
        conf = os.path.join(self.dir, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""
base_dir = {d}/run
state_dir = {d}/state
instance_name = bench-{port}
log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  process_limit = 3000
  client_limit = 1
}}
service pop3 {{
  process_limit = 3000
}}
service anvil {{
  client_limit = 7000
}}
default_client_limit = 7000
mail_max_userip_connections = 3000
""".format(d=self.dir, port=self.port))
        self.conf = conf
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        end = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError("dovecot did not start: " + self.log())
                time.sleep(0.1)

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def fill(self, messages):
        # The LDA path is not what is measured: write the maildir files directly.
        for u in self.users:
            md = os.path.join(self.mail, u)
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(md, sub), exist_ok=True)
            for i, m in enumerate(messages):
                name = "%d.M%dP%d.bench" % (time.time(), i, os.getpid())
                with open(os.path.join(md, "new", name), "wb") as f:
                    f.write(m)
        subprocess.run(["chown", "-R", "nobody:nogroup", self.mail], check=True)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--users", type=int, default=50, help="mailboxes = concurrent clients")
    ap.add_argument("--messages", type=int, default=20, help="messages per mailbox per round")
    ap.add_argument("--size", type=int, default=4096, help="octets per message")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=500, help="idle connections for the memory measurement")
    args = ap.parse_args()
    users = ["user%03d@bench.test" % i for i in range(args.users)]
    password = "bench-pw"
    messages = [make_message(i, args.size) for i in range(args.messages)]
    servers = {"posternd": Postern(os.path.abspath(args.build), users, password), "dovecot": Dovecot(users, password)}
    results = {name: [] for name in servers}
    try:
        for r in range(args.rounds):
            for name, srv in servers.items():
                srv.fill(messages)
                count, octets, elapsed = asyncio.run(load(srv.port, users, password))
                if count != args.users * args.messages:
                    raise RuntimeError("%s: retrieved %d of %d" % (name, count, args.users * args.messages))
                results[name].append((count / elapsed, octets / elapsed / 1e6, elapsed))
                print("round %d %-8s %6d msgs in %6.2f s = %8.0f msg/s (%.1f MB/s)" %
                      (r + 1, name, count, elapsed, count / elapsed, octets / elapsed / 1e6), flush=True)
        print()
        best = {n: max(x[0] for x in v) for n, v in results.items()}
        med = {n: sorted(x[0] for x in v)[len(v) // 2] for n, v in results.items()}
        for n in servers:
            print("%-8s median %8.0f msg/s, best %8.0f msg/s" % (n, med[n], best[n]))
        print("ratio posternd/dovecot (median): %.2fx" % (med["posternd"] / med["dovecot"]))
        print()
        for name, srv in servers.items():
            base, per_k, per_u = measure_idle(srv.pid, srv.port, args.idle, users, password)
            print("%-8s base RSS %7.1f MB; per idle connection before login: RSS %6.1f KB, PSS %6.1f KB; "
                  "per logged-in session: RSS %6.1f KB, PSS %6.1f KB" %
                  (name, base[0] / 1024, per_k[0], per_k[1], per_u[0], per_u[1]), flush=True)
    finally:
        for srv in servers.values():
            srv.stop()


if __name__ == "__main__":
    main()
