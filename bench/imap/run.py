#!/usr/bin/python3
"""IMAP benchmark: posternd against a private Dovecot, same machine, same run
(bench/imap/README.md).

Both servers get the same users (the same argon2id hash string: posternctl
makes it, Dovecot's passwd-file gets a copy), the same seeded messages
(bench_imap seed, over IMAP APPEND) and the same load (bench_imap load). The
load runs alternate Dovecot, posternd, Dovecot, posternd... and the best run of
each counts. Then each server holds --idle-connections logged-in connections
with INBOX selected, and the RSS (and PSS) of its processes is compared with
the figure before they were opened.

Usage: run.py BUILD_DIR [--clients 20] [--users 20] [--duration 20] [--rounds 2]
              [--idle-connections 500] [--only dovecot|postern] [--keep]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
PASSWORD = "bench-pw"
DOMAIN = "bench.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s:\n%s" % (proc.returncode, read(log)[-3000:]))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not open after %ss:\n%s" % (port, timeout, read(log)[-3000:]))


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop(proc, timeout=15):
    """SIGTERM the process we started (by PID), SIGKILL after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# -- /proc accounting ---------------------------------------------------------
CLK = os.sysconf("SC_CLK_TCK")


def tree(root):
    """PIDs of `root` and all its descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(root):
    """utime+stime of the tree plus cutime+cstime (children already reaped), seconds."""
    total = 0
    for pid in tree(root):
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += sum(int(x) for x in fields[11:15])
    return total / CLK


def memory(root):
    """{'processes', 'rss_kib', 'pss_kib', 'by_name': {comm: count}} of the tree."""
    rss = pss = n = 0
    by_name = {}
    for pid in tree(root):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        n += 1
        by_name[comm] = by_name.get(comm, 0) + 1
    return {"processes": n, "rss_kib": rss, "pss_kib": pss, "by_name": by_name}


# -- servers ------------------------------------------------------------------
class Postern:
    name = "posternd"

    def __init__(self, build, work, users, worker_threads=None):
        self.build = build
        self.dir = os.path.join(work, "postern")
        os.makedirs(self.dir)
        self.port = free_port()
        self.config = os.path.join(self.dir, "postern.xml")
        self.log = os.path.join(self.dir, "posternd.log")
        self.users = users
        self.proc = None
        with open(self.config, "w") as f:
            f.write("""<?xml version="1.0"?>
<postern>
  <server name="mx.bench.test" data-dir="{dir}/var"{workers}/>
  <log level="info"/>
  <plugin-dirs><dir>{build}/plugins</dir></plugin-dirs>
  <certificate cert="{dir}/tls/cert.pem" key="{dir}/tls/key.pem" generate="true"/>
  <listeners>
    <listener name="imap" protocol="imap" address="127.0.0.1" port="{port}" tls="starttls" cleartext-auth="true"/>
  </listeners>
  <smtp><local-domain>{domain}</local-domain></smtp>
  <plugins>
    <plugin name="imap"></plugin>
  </plugins>
  <queue deliver="false"/>
  <directory hash-time="1" hash-memory="1M"/>
  <mailstore/>
</postern>
""".format(dir=self.dir, build=build, port=self.port, domain=DOMAIN,
           workers=' worker-threads="%d"' % worker_threads if worker_threads else ""))

    def ctl(self, *args, stdin=None):
        p = subprocess.run([os.path.join(self.build, "bin", "posternctl"), "--config", self.config, *args],
                           input=stdin, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("posternctl %s -> %d: %s" % (" ".join(args), p.returncode, p.stderr))

    def create_users(self):
        for i in range(1, self.users + 1):
            self.ctl("user", "add", "u%d@%s" % (i, DOMAIN), "--password-stdin", stdin=PASSWORD + "\n")

    def password_hash(self):
        db = sqlite3.connect(os.path.join(self.dir, "var", "directory.sqlite"))
        try:
            return db.execute("SELECT password_hash FROM accounts WHERE address = ?", ("u1@" + DOMAIN,)).fetchone()[0]
        finally:
            db.close()

    def start(self):
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([os.path.join(self.build, "bin", "posternd"), "--config", self.config, "--foreground"],
                                     stdout=self.logf, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.port, self.proc, self.log)

    def stop(self):
        stop(self.proc)
        self.logf.close()

    def pid(self):
        return self.proc.pid


class Dovecot:
    name = "dovecot"

    def __init__(self, work, users, password_hash):
        self.dir = os.path.join(work, "dovecot")
        for d in ("run", "state", "home"):
            os.makedirs(os.path.join(self.dir, d))
        # Dovecot refuses mail access as uid 0: the mail belongs to nobody.
        os.chmod(self.dir, 0o755)
        os.chown(os.path.join(self.dir, "home"), 65534, 65534)
        self.port = free_port()
        self.config = os.path.join(self.dir, "dovecot.conf")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.proc = None
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for i in range(1, users + 1):
                f.write("u%d@%s:{ARGON2ID}%s\n" % (i, DOMAIN, password_hash))
        with open(self.config, "w") as f:
            f.write("""protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={dir}/home/%u
}}
mail_location = maildir:~/Maildir
default_process_limit = 2000
default_client_limit = 5000
default_vsz_limit = 0
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  client_limit = 5000
}}
protocol imap {{
  mail_max_userip_connections = 2000
}}
""".format(dir=self.dir, port=self.port))

    def start(self):
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.port, self.proc, self.log)

    def stop(self):
        stop(self.proc)

    def pid(self):
        return self.proc.pid


# -- runs ---------------------------------------------------------------------
GENERATOR = None


def generator(build, *args):
    return [GENERATOR or os.path.join(build, "bench", "imap", "bench_imap"), *[str(a) for a in args]]


def seed(build, server, users, messages):
    p = subprocess.run(generator(build, "seed", "--port", server.port, "--users", users, "--messages", messages),
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("seeding %s failed: %s%s" % (server.name, p.stdout, p.stderr))


def load(build, server, a, mix="all", duration=None):
    duration = duration or a.duration
    cpu0 = cpu_seconds(server.pid())
    t0 = time.monotonic()
    p = subprocess.run(generator(build, "load", "--port", server.port, "--users", a.users, "--clients", a.clients,
                                 "--duration", duration, "--warmup", a.warmup, "--messages", a.messages,
                                 "--per-login", a.per_login, "--threads", a.threads, "--mix", mix),
                       capture_output=True, text=True, timeout=duration * 10 + 120)
    wall = time.monotonic() - t0
    if not p.stdout.strip():
        raise RuntimeError("load against %s printed nothing: %s" % (server.name, p.stderr))
    r = json.loads(p.stdout)
    r["server_cpu_s"] = cpu_seconds(server.pid()) - cpu0
    r["server_cpu_ms_per_command"] = 1000 * r["server_cpu_s"] / max(1, r["all_commands"])
    r["generator_cpu_ms_per_command"] = 1000 * r["generator_cpu_s"] / max(1, r["all_commands"])
    r["run_wall_s"] = wall
    r["exit"] = p.returncode
    return r


def idle(build, server, a):
    before = memory(server.pid())
    p = subprocess.Popen(generator(build, "idle", "--port", server.port, "--users", a.users,
                                   "--connections", a.idle_connections),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        if not line.startswith("READY"):
            raise RuntimeError("idle connections to %s: %s" % (server.name, line))
        time.sleep(2)  # let lazily started workers settle
        during = memory(server.pid())
    finally:
        p.stdin.close()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    n = a.idle_connections
    return {"connections": n, "before": before, "during": during,
            "rss_kib_per_connection": (during["rss_kib"] - before["rss_kib"]) / n,
            "pss_kib_per_connection": (during["pss_kib"] - before["pss_kib"]) / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--per-login", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle-connections", type=int, default=500)
    ap.add_argument("--mixes", default="fetch_flags,fetch_body,search,append,store",
                    help="single-command runs after the mixed ones (comma list, empty for none)")
    ap.add_argument("--mix-duration", type=float, default=8)
    ap.add_argument("--worker-threads", type=int, help="posternd's <server worker-threads> (default: its own)")
    ap.add_argument("--only", choices=["dovecot", "postern"])
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--generator", help="bench_imap binary (default BUILD/bench/imap/bench_imap)")
    a = ap.parse_args()
    global GENERATOR
    GENERATOR = a.generator
    build = os.path.abspath(a.build)

    work = tempfile.mkdtemp(prefix="postern-bench-imap-", dir="/var/tmp")
    os.chmod(work, 0o755)  # Dovecot's auth and mail processes run as other users
    servers = []
    results = {"config": {k: v for k, v in vars(a).items() if k != "build"}, "load": [], "mixes": [], "idle": {}}
    try:
        postern = Postern(build, work, a.users, a.worker_threads)
        postern.create_users()
        dovecot = Dovecot(work, a.users, postern.password_hash())
        if a.only != "postern":
            servers.append(dovecot)
        if a.only != "dovecot":
            servers.append(postern)
        for s in servers:
            s.start()
            seed(build, s, a.users, a.messages)
        for _ in range(a.rounds):
            for s in servers:
                r = load(build, s, a)
                r["server"] = s.name
                results["load"].append(r)
                print("%-8s %8.0f commands/s  errors %d  mismatches %d  server cpu %.1fs (%.3f ms/command)"
                      "  generator cpu %.1fs (%.3f ms/command)"
                      % (s.name, r["commands_per_s"], r["errors"], r["body_mismatches"], r["server_cpu_s"],
                         r["server_cpu_ms_per_command"], r["generator_cpu_s"], r["generator_cpu_ms_per_command"]),
                      file=sys.stderr)
                if r["errors"]:
                    print("  error samples: %s" % json.dumps(r["error_samples"])[:2000], file=sys.stderr)
        for mix in [m for m in a.mixes.split(",") if m]:
            for s in servers:
                r = load(build, s, a, mix=mix, duration=a.mix_duration)
                r["server"] = s.name
                results["mixes"].append(r)
                print("%-8s %-12s %8.0f commands/s  errors %d  server %.3f ms cpu/command"
                      % (s.name, mix, r["commands_per_s"], r["errors"], r["server_cpu_ms_per_command"]),
                      file=sys.stderr)
                if r["errors"]:
                    print("  error samples: %s" % json.dumps(r["error_samples"])[:2000], file=sys.stderr)
        for s in servers:
            results["idle"][s.name] = idle(build, s, a)
            print("%-8s idle: %.1f KiB RSS / %.1f KiB PSS per connection (%s)"
                  % (s.name, results["idle"][s.name]["rss_kib_per_connection"],
                     results["idle"][s.name]["pss_kib_per_connection"],
                     results["idle"][s.name]["during"]["by_name"]), file=sys.stderr)
        best = {}
        for r in results["load"]:
            if r["exit"] == 0 and r["commands_per_s"] > best.get(r["server"], 0):
                best[r["server"]] = r["commands_per_s"]
        results["best_commands_per_s"] = best
        if "posternd" in best and "dovecot" in best:
            results["ratio_postern_to_dovecot"] = best["posternd"] / best["dovecot"]
        mix_ratio = {}
        for mix in {r["mix"] for r in results["mixes"]}:
            by = {r["server"]: r["commands_per_s"] for r in results["mixes"] if r["mix"] == mix and r["exit"] == 0}
            if by.get("dovecot") and "posternd" in by:
                mix_ratio[mix] = by["posternd"] / by["dovecot"]
        results["mix_ratio_postern_to_dovecot"] = mix_ratio
        print(json.dumps(results, indent=1))
    finally:
        for s in servers:
            s.stop()
        if a.keep:
            print("work directory kept: %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
