"""Third-party proof: the installed SDK builds sdk/examples/hello_filter and
sdk/examples/platform_probe out of tree, and both plugins act in a real posternd.

Steps:
  1. cmake --install <POSTERN_BINARY_DIR> --prefix <tmp>/prefix
  2. copy each example to <tmp>, configure it with only
     -DCMAKE_PREFIX_PATH=<tmp>/prefix, build it
  3. check <name>.so + <name>.plugin.xml, and that each .so exports only
     postern_plugin_entry_v1
  4. hello_filter: start posternd (tests/integration/harness.py) with the
     plugin, send mail with smtplib, check the spooled message carries X-Hello
     and that RCPT TO:<blocked@...> gets 550
  5. platform_probe (ABI 1.3): posternd with the imap plugin, a directory with
     local accounts and the mailbox store, and a verdict service (a Python TCP
     server on loopback): the plugin's outbound connection answers and its
     pending data_end hook adds X-Probe-Verdict (or "unavailable (...)" when
     the service closes without answering); a "defang" answer makes the
     pending hook replace the body and change the envelope sender (the stored
     copy shows the new body and Return-Path); mail to the watched address
     makes it inject a notice that lands in a mailbox; an imaplib UID MOVE
     INBOX -> Archive raises a `moved` event; `posternctl probe stats --json`
     (its admin command) shows the stored and moved events it counted

Environment (set by CTest): POSTERN_BINARY_DIR, POSTERN_SOURCE_DIR.
"""

import json
import os
import re
import shutil
import imaplib
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("POSTERN_SOURCE_DIR", HERE.parents[2])).resolve()
BINARY_DIR = Path(os.environ.get("POSTERN_BINARY_DIR", SOURCE_DIR / "build")).resolve()
EXAMPLES_DIR = SOURCE_DIR / "sdk" / "examples"
EXAMPLES = ("hello_filter", "platform_probe")
POSTERND = Path(os.environ.get("POSTERN_BIN_DIR", BINARY_DIR / "bin")) / "posternd"

sys.path.insert(0, str(HERE.parent))  # tests/integration: harness.py

# Symbols every shared object defines; anything else exported is a leak.
STANDARD_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start", "_DYNAMIC", "_GLOBAL_OFFSET_TABLE_"}
ENTRY_SYMBOL = "postern_plugin_entry_v1"


def run(cmd, **kwargs):
    """Runs a command; on failure the assertion message carries its output."""
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError("command failed ({}): {}\n{}".format(proc.returncode, " ".join(map(str, cmd)), proc.stdout))
    return proc.stdout


class VerdictHandler(socketserver.StreamRequestHandler):
    """platform_probe's verdict service: one request line, one answer line."""

    def handle(self):
        line = self.rfile.readline(4096)
        if not line:
            return
        request = line.decode("ascii", "replace").rstrip("\r\n")
        self.server.requests.append(request)
        if "msgid=<silent-" in request:
            return  # closes without answering: the plugin's on-unavailable path
        if "msgid=<defang-" in request:
            self.wfile.write(b"defang test-signature\r\n")  # body and sender change from the pending hook
            return
        answer = "clean; " + request[len("CHECK "):] if request.startswith("CHECK ") else "unknown-request"
        self.wfile.write((answer + "\r\n").encode())


class VerdictServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), VerdictHandler)
        self.requests = []


class SdkInstallTest(unittest.TestCase):
    """One tmp dir for the class: install and build once, then run the daemon checks."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="postern-sdk-install-"))
        cls.prefix = cls.tmp / "prefix"
        cls.example_build = cls.tmp / "build"  # hello_filter's
        cls.builds = {name: cls.tmp / ("build" if name == "hello_filter" else "build-" + name) for name in EXAMPLES}
        cls.build_error = None
        try:
            cls._install_and_build()
        except AssertionError as e:  # reported by each test, not as a class error without context
            cls.build_error = str(e)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("POSTERN_KEEP_TMP"):
            print("kept", cls.tmp, file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _install_and_build(cls):
        run(["cmake", "--install", BINARY_DIR, "--prefix", cls.prefix])
        env = dict(os.environ)
        for var in ("CMAKE_PREFIX_PATH", "PosternSDK_DIR", "PosternSDK_ROOT"):
            env.pop(var, None)
        for name in EXAMPLES:
            src, build = cls.tmp / name, cls.builds[name]
            # A copy outside the source tree: a relative path back into it would break here.
            shutil.copytree(EXAMPLES_DIR / name, src, ignore=shutil.ignore_patterns("build", "build-*"))
            configure = ["cmake", "-S", src, "-B", build,
                         "-DCMAKE_PREFIX_PATH=" + str(cls.prefix),
                         # Stricter than a third party needs: no package registry may stand in for the prefix.
                         "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
                         "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
            run(configure, env=env)
            run(["cmake", "--build", build], env=env)

    def setUp(self):
        if self.build_error:
            self.fail(self.build_error)

    # --- the out-of-tree build ------------------------------------------------

    def test_sdk_found_in_prefix_only(self):
        for name, build in self.builds.items():
            with self.subTest(example=name):
                cache = (build / "CMakeCache.txt").read_text()
                m = re.search(r"^PosternSDK_DIR:PATH=(.*)$", cache, re.M)
                self.assertIsNotNone(m, "PosternSDK_DIR not in the example's CMakeCache.txt")
                sdk_dir = Path(m.group(1)).resolve()
                self.assertTrue(str(sdk_dir).startswith(str(self.prefix.resolve())), sdk_dir)
                commands = (build / "compile_commands.json").read_text()
                self.assertNotIn(str(SOURCE_DIR), commands,
                                 "the example's compile command points into the source tree")
                self.assertIn(str(self.prefix), commands)

    def test_package_version_is_the_abi_version(self):
        header = (self.prefix / "include" / "postern" / "abi" / "v1" / "postern_abi.h").read_text()
        abi = ".".join(re.search(r"^#define POSTERN_ABI_VERSION_{} (\d+)$".format(part), header, re.M).group(1)
                       for part in ("MAJOR", "MINOR"))
        files = list(self.prefix.glob("lib*/cmake/PosternSDK/PosternSDKConfigVersion.cmake"))
        self.assertEqual(len(files), 1, files)
        self.assertIn('set(PACKAGE_VERSION "{}.0")'.format(abi), files[0].read_text())
        config = files[0].with_name("PosternSDKConfig.cmake").read_text()
        self.assertIn('set(PosternSDK_ABI_VERSION "{}")'.format(abi), config)

    def test_plugin_and_descriptor_built(self):
        for name, build in self.builds.items():
            with self.subTest(example=name):
                so = build / (name + ".so")
                xml = build / (name + ".plugin.xml")
                self.assertTrue(so.is_file(), so)
                self.assertTrue(xml.is_file(), xml)
                self.assertIn('name="{}"'.format(name), xml.read_text())

    def test_only_entry_symbol_exported(self):
        for name, build in self.builds.items():
            with self.subTest(example=name):
                out = run(["nm", "-D", "--defined-only", build / (name + ".so")])
                names = [line.split()[-1] for line in out.splitlines() if line.strip()]
                self.assertIn(ENTRY_SYMBOL, names)
                leaked = [n for n in names if n != ENTRY_SYMBOL and n not in STANDARD_SYMBOLS]
                # -fvisibility=hidden cannot hide libstdc++ template instantiations (std::to_string
                # here): they keep default visibility, some as STB_GNU_UNIQUE, which binds across
                # RTLD_LOCAL plugins and makes dlclose a no-op. postern_add_plugin() must link with
                # a version script: { global: postern_plugin_entry_v1; local: *; };
                self.assertEqual(leaked, [], "{}.so exports more than its entry point "
                                 "(postern_add_plugin needs -Wl,--version-script)".format(name))

    # --- the plugin in a real daemon -------------------------------------------

    def test_plugin_acts_on_a_real_session(self):
        if not POSTERND.exists():
            self.skipTest("posternd not built yet: {}".format(POSTERND))
        from harness import Daemon  # tests/integration/harness.py

        domain = "example.test"
        d = Daemon(smtp_xml="<local-domain>{}</local-domain>".format(domain),
                   listeners=[{"name": "smtp", "protocol": "smtp", "tls": "none"}],
                   plugin_dirs=[str(self.example_build)],
                   plugins=[("hello_filter", "",
                             {"enabled": "true", "greeting": "from-test", "reject-local": "blocked"})],
                   binary=str(POSTERND))
        try:
            d.start()
        except RuntimeError as e:
            d.stop()
            self.fail(str(e))
        self.addCleanup(d.stop)

        marker = "<{}@sdk-install.test>".format(uuid.uuid4().hex)
        msg = ("From: sender@example.org\r\nTo: alice@{dom}\r\nSubject: sdk install\r\n"
               "Message-ID: {mid}\r\n\r\nhello\r\n").format(dom=domain, mid=marker)
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as smtp:
            smtp.ehlo("client.test")
            code, text = smtp.mail("sender@example.org")
            self.assertEqual(code, 250, text)
            code, text = smtp.rcpt("blocked@" + domain)
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.7.1", text)
            self.assertIn(b"hello_filter", text)
            code, text = smtp.rcpt("alice@" + domain)
            self.assertEqual(code, 250, text)
            code, text = smtp.data(msg.encode())
            self.assertEqual(code, 250, text)

        stored = self._find_message(d, marker)
        self.assertIsNotNone(stored, "no stored message with Message-ID {}\n{}".format(marker, d.log()[-4000:]))
        self.assertIn("X-Hello: from-test; peer=127.0.0.1", stored)
        self.assertIn("hello_filter", d.log())  # its init log line, tagged with its name
        # Its admin command (ABI 1.3), served by posternd and called through posternctl.
        ctl = subprocess.run([str(POSTERND.parent / "posternctl"), "--config", d.config_path, "hello", "stats",
                              "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        self.assertEqual(json.loads(ctl.stdout), {"greeted": 1})

    def test_platform_probe_uses_the_abi_1_3_platform(self):
        if not POSTERND.exists():
            self.skipTest("posternd not built yet: {}".format(POSTERND))
        from harness import Daemon  # tests/integration/harness.py

        domain = "example.test"
        accounts = {"alice": "alice-pw", "probe-notify": "notify-pw"}
        posternctl = POSTERND.parent / "posternctl"
        verdict = VerdictServer()
        threading.Thread(target=verdict.serve_forever, daemon=True).start()
        self.addCleanup(verdict.server_close)
        self.addCleanup(verdict.shutdown)  # cleanups run last-in first-out: shutdown, then close

        d = Daemon(listeners=[{"name": "smtp", "protocol": "smtp", "tls": "none"},
                              {"name": "imap", "protocol": "imap", "tls": "none", "cleartext-auth": "true"}],
                   plugins=[("imap", "", {}),
                            ("platform_probe", "",
                             {"enabled": "true", "timeout": "10s", "verdict-port": verdict.server_address[1],
                              "verdict-timeout": "5s", "watch": "probe-notify@" + domain,
                              "defang-sender": "quarantine-bounces@" + domain,
                              "notify-to": "alice@" + domain})],
                   plugin_dirs=[str(BINARY_DIR / "plugins"), str(self.builds["platform_probe"])],
                   smtp_xml="<local-domain>{}</local-domain>".format(domain),
                   smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"},
                   extra_xml='<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>',
                   deliver=True, binary=str(POSTERND))
        self.addCleanup(d.stop)
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        for local, pw in accounts.items():
            p = subprocess.run([str(posternctl), "--config", d.config_path, "user", "add",
                                "{}@{}".format(local, domain), "--password-stdin"],
                               input=pw + "\n", capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, "posternctl user add {}: {}".format(local, p.stderr))
        try:
            d.start()
        except RuntimeError as e:
            self.fail(str(e))
        self._wait_port(d.port("imap"), d)

        def send(rcpt, subject, msgid):
            raw = ("From: Sender <sender@outside.example>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                   "Message-ID: {msgid}\r\n\r\nbody\r\n").format(rcpt=rcpt, subject=subject, msgid=msgid)
            with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as smtp:
                smtp.ehlo("client.test")
                refused = smtp.sendmail("sender@outside.example", [rcpt], raw.encode())
                self.assertEqual(refused, {})

        imap = imaplib.IMAP4("127.0.0.1", d.port("imap"), timeout=30)
        self.addCleanup(self._logout, imap)
        typ, data = imap.login("alice@" + domain, accounts["alice"])
        self.assertEqual(typ, "OK", data)

        # 1. The verdict service's answer, through the host's outbound stream and the pending handle.
        first = "<{}@sdk-install.test>".format(uuid.uuid4().hex)
        send("alice@" + domain, "verdict please", first)
        uid = self._imap_find(imap, "INBOX", ("HEADER", "Message-ID", first), d)
        typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
        self.assertEqual(typ, "OK", data)
        header = data[0][1].decode()
        expected = "clean; peer=127.0.0.1 from=sender@outside.example rcpts=1 msgid={}".format(first)
        self.assertIn("X-Probe-Verdict: {}\r\n".format(expected), header)
        self.assertEqual(header.count("X-Probe-Verdict:"), 1, header)
        self.assertIn("CHECK " + expected[len("clean; "):], verdict.requests)

        # A service that closes without answering: on-unavailable="continue" marks the message and goes on.
        silent = "<silent-{}@sdk-install.test>".format(uuid.uuid4().hex)
        send("alice@" + domain, "no verdict", silent)
        silent_uid = self._imap_find(imap, "INBOX", ("HEADER", "Message-ID", silent), d)
        typ, data = imap.uid("FETCH", silent_uid, "(BODY.PEEK[HEADER])")
        self.assertEqual(typ, "OK", data)
        self.assertIn("X-Probe-Verdict: unavailable (closed without an answer)\r\n", data[0][1].decode())
        self._wait_log(d, r"qid=\S+ verdict service unavailable: closed without an answer")

        # A "defang" answer: the pending hook replaces the body and changes the envelope sender;
        # the stored copy has the new body, the old headers and Return-Path: <the new sender>.
        defanged = "<defang-{}@sdk-install.test>".format(uuid.uuid4().hex)
        raw = ("From: Sender <sender@outside.example>\r\nTo: alice@{d}\r\nSubject: defang me\r\n"
               "Message-ID: {m}\r\nContent-Type: application/octet-stream\r\n"
               "Content-Transfer-Encoding: base64\r\n\r\nTUFMV0FSRQ==\r\n").format(d=domain, m=defanged)
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as smtp:
            smtp.ehlo("client.test")
            self.assertEqual(smtp.sendmail("sender@outside.example", ["alice@" + domain], raw.encode()), {})
        defanged_uid = self._imap_find(imap, "INBOX", ("HEADER", "Message-ID", defanged), d)
        typ, data = imap.uid("FETCH", defanged_uid, "(BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        stored = data[0][1].decode("utf-8", "replace")
        head, _, body = stored.partition("\r\n\r\n")
        head += "\r\n"  # each field with its line end
        self.assertTrue(head.startswith("Return-Path: <quarantine-bounces@{}>\r\n".format(domain)), head)
        self.assertEqual(head.count("Return-Path:"), 1, head)
        self.assertIn("Subject: defang me\r\n", head)
        self.assertIn("X-Probe-Verdict: defang test-signature\r\n", head)
        self.assertIn("Content-Type: text/plain; charset=us-ascii\r\n", head)
        self.assertNotIn("Content-Transfer-Encoding", head)
        self.assertEqual(body, "This message's content was removed by platform_probe (test-signature).\r\n")
        self.assertNotIn("TUFMV0FSRQ", stored)
        self._wait_log(d, r"qid=\S+ defanged: body replaced, sender <quarantine-bounces@")

        # 2. Mail to the watched address: an injected notice lands in alice's INBOX.
        watched = "<{}@sdk-install.test>".format(uuid.uuid4().hex)
        send("probe-notify@" + domain, "for the watched address", watched)
        notice_uid = self._imap_find(imap, "INBOX", ("SUBJECT", '"Mail for probe-notify@{}"'.format(domain)), d)
        typ, data = imap.uid("FETCH", notice_uid, "(BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        notice = data[0][1].decode("utf-8", "replace")
        # Every header line is a field or a continuation: the host's trace field arrives intact.
        head = notice.split("\r\n\r\n", 1)[0].split("\r\n")
        bad = [l for l in head if not re.match(r"[\x21-\x39\x3b-\x7e]+:|[ \t]", l)]
        self.assertEqual(bad, [], "malformed header lines in the injected notice:\n" + notice)
        self.assertRegex(notice, r"\r\nReceived: by \S+ \(Postern\) id [0-9a-f]+\r\n\t\(injected by plugin platform_probe\)")
        self.assertIn("Auto-Submitted: auto-generated\r\n", notice)
        self.assertIn("Message-ID: " + watched, notice)
        self.assertIn("Subject:    for the watched address", notice)
        self._wait_log(d, r"qid=\S+ notice queued as [0-9a-f]+")

        # 3. imaplib moves the first message; the plugin sees `moved` INBOX -> Archive by imap.
        typ, data = imap.select("INBOX")
        self.assertEqual(typ, "OK", data)
        typ, data = imap.uid("MOVE", uid, "Archive")
        self.assertEqual(typ, "OK", data)
        moved = {"from": "INBOX", "to": "Archive", "actor": "imap", "messages": 1}
        deadline = time.monotonic() + 15
        while True:
            stats = self._probe_stats(posternctl, d)
            if moved in stats["moved"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertIn(moved, stats["moved"], stats)
        sys.stderr.write("probe stats: {}\n".format(json.dumps(stats)))
        # Stored: alice's three messages, probe-notify's message and the notice, each in an INBOX.
        self.assertEqual(stats["events"]["stored"], 5, stats)
        self.assertEqual(stats["stored"], [{"folder": "INBOX", "messages": 5}], stats)
        self.assertEqual(stats["events"]["moved"], 1, stats)
        self.assertEqual(stats["verdicts"], {"answered": 3, "unavailable": 1}, stats)
        self.assertEqual(stats["notices"], {"queued": 1, "failed": 0}, stats)
        # Without --json posternctl prints the plugin's text form.
        text = subprocess.run([str(posternctl), "--config", d.config_path, "probe", "stats"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("INBOX -> Archive by imap: 1", text.stdout)

    def _wait_log(self, d, pattern, timeout=15.0):
        """Waits for a posternd log line matching `pattern` (the log is written asynchronously)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, d.log()):
            if time.monotonic() > deadline:
                self.fail("no log line matches {!r}; log:\n{}".format(pattern, d.log()[-4000:]))
            time.sleep(0.1)

    def _probe_stats(self, posternctl, d):
        ctl = subprocess.run([str(posternctl), "--config", d.config_path, "probe", "stats", "--json"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(ctl.returncode, 0, "{}\n{}".format(ctl.stderr, d.log()[-3000:]))
        return json.loads(ctl.stdout)

    def _imap_find(self, imap, folder, criteria, d, timeout=20.0):
        """The UID of the newest message in `folder` matching the SEARCH criteria, once delivered."""
        deadline = time.monotonic() + timeout
        while True:
            typ, data = imap.select(folder)
            self.assertEqual(typ, "OK", data)
            typ, data = imap.uid("SEARCH", *criteria)
            self.assertEqual(typ, "OK", data)
            if data[0]:
                return data[0].split()[-1].decode()
            if time.monotonic() > deadline:
                self.fail("nothing matches {} in {}; log:\n{}".format(criteria, folder, d.log()[-4000:]))
            time.sleep(0.1)

    @staticmethod
    def _wait_port(port, d, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("port {} never opened; log:\n{}".format(port, d.log()[-3000:]))
                time.sleep(0.05)

    @staticmethod
    def _logout(imap):
        try:
            imap.logout()
        except Exception:
            pass

    @staticmethod
    def _find_message(d, needle, timeout=15.0):
        """The stored message carrying `needle`: in the incoming spool (harness
        parser), or anywhere under the data dir once the queue moved it on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in d.spool_messages():
                text = m["message"].decode("utf-8", "replace")
                if needle in text:
                    return text
            for path in sorted(Path(d.data_dir).rglob("*")):
                try:
                    if path.is_file():
                        text = path.read_text(errors="replace")
                        if needle in text:
                            return text
                except OSError:
                    continue  # renamed by the queue manager meanwhile
            time.sleep(0.1)
        return None


if __name__ == "__main__":
    unittest.main(verbosity=2)
