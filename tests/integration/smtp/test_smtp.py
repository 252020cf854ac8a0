"""The SMTP engine against the real posternd: smtplib, raw sockets, swaks, openssl s_client."""

import base64
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import Daemon, hash_password  # noqa: E402

PASSWORD = "correct horse battery"
SMTP_XML = """
  <local-domain>example.test</local-domain>
  <relay-domain>gateway.example</relay-domain>
  <account user="alice@example.test" addresses="alias@example.test" password-hash="%s"/>
""" % hash_password(PASSWORD)
SMTP_ATTRS = {"tarpit-delay": "0", "auth-failure-delay": "10ms", "min-free-disk": "0",
              "max-message-size": "64k", "max-recipients": "20"}


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A line-oriented raw SMTP client (for what smtplib refuses to send)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        lines = []
        while True:
            while b"\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    return (0, b"".join(lines).decode())
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            lines.append(line + b"\n")
            if len(line) < 4 or line[3:4] == b" ":
                return (int(line[:3]), b"".join(lines).decode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()


class SmtpEngineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def setUp(self):
        self.before = {m["queue_id"] for m in self.d.spool_messages()}

    def new_messages(self, count=1):
        deadline = time.monotonic() + 5
        while True:
            msgs = [m for m in self.d.spool_messages() if m["queue_id"] not in self.before]
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)

    def raw(self, listener="smtp"):
        r = Raw(self.d.port(listener))
        code, _ = r.reply()
        self.assertEqual(code, 220)
        self.addCleanup(r.close)
        return r

    # -- S1: protocol ---------------------------------------------------------
    def test_smtplib_delivers_with_dsn_and_received(self):
        with smtplib.SMTP("127.0.0.1", self.d.port()) as s:
            code, ehlo = s.ehlo("client.example.org")
            self.assertEqual(code, 250)
            for ext in (b"PIPELINING", b"SIZE 65536", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES",
                        b"CHUNKING", b"DSN", b"STARTTLS"):
                self.assertIn(ext, ehlo)
            refused = s.sendmail("sender@example.org", ["bob@example.test"],
                                 b"Subject: it\r\n\r\nhello\r\n.dot line\r\n",
                                 mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=id+2B1"],
                                 rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;bob@example.test"])
            self.assertEqual(refused, {})
        [m] = self.new_messages()
        self.assertEqual(m["mail_from"], "sender@example.org")
        self.assertEqual(m["rcpts"], [{"address": "bob@example.test", "notify": "SUCCESS,DELAY",
                                       "orcpt": "rfc822;bob@example.test"}])
        self.assertEqual(m["ret"], "HDRS")
        self.assertEqual(m["envid"], "id+2B1")
        self.assertEqual(m["body"], "8BITMIME")
        self.assertTrue(m["message"].startswith(b"Received: from client.example.org ([127.0.0.1])\r\n"
                                                b"\tby mx.example.test (Postern) with ESMTP id "))
        self.assertIn(b"\r\n\tfor <bob@example.test>; ", m["message"])
        self.assertTrue(m["message"].endswith(b"Subject: it\r\n\r\nhello\r\n.dot line\r\n"))

    def test_swaks_delivers(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.d.port(), "--from", "a@example.org",
                              "--to", "carol@example.test", "--helo", "swaks.example", "--body", "swaks body"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("250 2.0.0 Ok: queued as", out.stdout)
        [m] = self.new_messages()
        self.assertEqual(m["rcpts"][0]["address"], "carol@example.test")

    def test_swaks_pipelining_and_chunking(self):
        for extra in (["--pipeline"], ["--pipeline", "--tls"]):
            out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.d.port(), "--from", "a@example.org",
                                  "--to", "dave@example.test,erin@example.test", "--body", "pipelined"] + extra,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        msgs = self.new_messages(2)
        self.assertEqual(len(msgs), 2)
        self.assertTrue(any(b"with ESMTPS id" in m["message"] for m in msgs))

    def test_enhanced_codes_and_sequence(self):
        r = self.raw()
        for line, code in [("MAIL FROM:<a@example.org>", 503), ("EHLO x", 250), ("RCPT TO:<b@example.test>", 503),
                           ("DATA", 503), ("MAIL FROM:<a@example.org>", 250), ("DATA", 503), ("RSET", 250),
                           ("VRFY root", 252), ("HELP", 214), ("NOOP", 250), ("BOGUS", 500)]:
            c, text = r.cmd(line)
            self.assertEqual(c, code, line + ": " + text)
            if not line.startswith("EHLO"):
                self.assertRegex(text, r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ", line)
        self.assertEqual(r.cmd("QUIT")[0], 221)

    def test_bdat_zero_last(self):
        r = self.raw()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<frank@example.test>")
        body = b"Subject: bdat\r\n\r\nchunk\r\n"
        r.send(b"BDAT %d\r\n" % len(body) + body + b"BDAT 0 LAST\r\n")
        self.assertEqual(r.reply()[0], 250)
        code, text = r.reply()
        self.assertEqual(code, 250, text)
        [m] = self.new_messages()
        self.assertTrue(m["message"].endswith(body))

    def test_smtputf8(self):
        r = self.raw()
        r.cmd("EHLO x")
        self.assertEqual(r.cmd("MAIL FROM:<jörg@example.org>")[0], 553)
        self.assertEqual(r.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<grüße@example.test>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        self.assertEqual(r.cmd("Subject: ü\r\n\r\nx\r\n.")[0], 250)
        [m] = self.new_messages()
        self.assertTrue(m["smtputf8"])
        self.assertIn(b"with UTF8SMTP id", m["message"])

    # -- S2: TLS and AUTH -----------------------------------------------------
    def test_starttls_and_auth_with_smtplib(self):
        with smtplib.SMTP("127.0.0.1", self.d.port("submission")) as s:
            s.ehlo("c")
            self.assertFalse(s.has_extn("auth"), "no AUTH before TLS")
            code, _ = s.mail("alice@example.test")
            self.assertEqual(code, 530)
            s.rset()
            s.starttls(context=tls_context())
            s.ehlo("c")
            self.assertTrue(s.has_extn("auth"))
            with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
                s.login("alice@example.test", "wrong")
            self.assertEqual(e.exception.smtp_code, 535)
            self.assertIn(b"5.7.8", e.exception.smtp_error)
            s.login("alice@example.test", PASSWORD)
            with self.assertRaises(smtplib.SMTPSenderRefused) as e:
                s.sendmail("mallory@example.test", ["x@elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(e.exception.smtp_code, 553)
            self.assertIn(b"not owned by auth user", e.exception.smtp_error)
            s.sendmail("alias@example.test", ["x@elsewhere.example"], b"Subject: relayed\r\n\r\nx\r\n")
        [m] = self.new_messages()
        self.assertEqual(m["auth_user"], "alice@example.test")
        self.assertIn(b"with ESMTPSA id", m["message"])
        self.assertRegex(m["message"], rb"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \(\d+ bits\)\)")

    def test_auth_login_on_implicit_tls(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.d.port("smtps"), context=tls_context()) as s:
            s.ehlo("c")
            self.assertFalse(s.has_extn("starttls"))
            s.login("alice@example.test", PASSWORD, initial_response_ok=False)
            s.sendmail("alice@example.test", ["y@elsewhere.example"], b"Subject: 465\r\n\r\nx\r\n")
        [m] = self.new_messages()
        self.assertIn(b"with ESMTPSA id", m["message"])

    def test_swaks_auth_plain_over_starttls(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.d.port("submission"), "--tls",
                              "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
                              "--from", "alice@example.test", "--to", "z@elsewhere.example"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("235 2.7.0", out.stdout)

    def test_openssl_s_client_starttls(self):
        out = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                              "127.0.0.1:%d" % self.d.port(), "-brief"],
                             input="EHLO probe\r\nQUIT\r\n", capture_output=True, text=True, timeout=30)
        self.assertIn("Protocol version: TLSv1.3", out.stderr + out.stdout)
        out12 = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                                "127.0.0.1:%d" % self.d.port(), "-tls1_1"],
                               input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        self.assertTrue(out12.returncode != 0 or "Cipher is (NONE)" in out12.stdout,
                        "TLS 1.1 must be refused: " + out12.stdout)

    def test_starttls_discards_pipelined_commands(self):
        r = self.raw()
        r.cmd("EHLO x")
        r.send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
        self.assertEqual(r.reply()[0], 220)
        r.sock = tls_context().wrap_socket(r.sock)
        r.buf = b""
        code, text = r.cmd("NOOP")
        self.assertEqual(code, 250, "the injected MAIL got no reply: " + text)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org>")[0], 503, "EHLO required again after TLS")

    def test_auth_refused_in_cleartext(self):
        r = self.raw("submission")
        r.cmd("EHLO x")
        code, text = r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode())
        self.assertEqual(code, 538, text)

    # -- S3: relay --------------------------------------------------------------
    def test_relay_control(self):
        r = self.raw()
        r.cmd("EHLO x")
        for rcpt, code in [("<u@example.test>", 250), ("<u@gateway.example>", 250), ("<u@elsewhere.example>", 554),
                           ("<u%elsewhere.example@example.test>", 554), ("<elsewhere.example!u@example.test>", 554),
                           ("<@example.test:u@elsewhere.example>", 554), ('<"u@elsewhere.example"@example.test>', 554),
                           ("<u@elsewhere.example@example.test>", 554), ("<u@example.test.>", 554)]:
            r.cmd("RSET")
            r.cmd("MAIL FROM:<a@example.org>")
            c, text = r.cmd("RCPT TO:" + rcpt)
            self.assertEqual(c, code, rcpt + ": " + text)
            if code == 554:
                self.assertIn("5.7.1", text)
                self.assertIn("Relay access denied", text)

    def test_swaks_relay_denied(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.d.port(), "--from", "a@example.org",
                              "--to", "victim@elsewhere.example"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("554 5.7.1", out.stdout)

    # -- S4/S5: limits and defences --------------------------------------------
    def test_size_limits(self):
        r = self.raw()
        r.cmd("EHLO x")
        self.assertEqual(r.cmd("MAIL FROM:<a@example.org> SIZE=70000")[0], 552)
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<u@example.test>")
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(("x" * 998 + "\r\n") * 80)
        code, text = r.cmd(".")
        self.assertEqual(code, 552, text)
        self.assertIn("5.3.4", text)
        self.assertEqual(r.cmd("NOOP")[0], 250)

    def test_long_command_line(self):
        r = self.raw()
        code, text = r.cmd("EHLO " + "a" * 600)
        self.assertEqual(code, 500)
        self.assertIn("5.5.2", text)
        self.assertEqual(r.cmd("EHLO ok")[0], 250)

    def test_smuggling_is_rejected(self):
        for payload in (b"x\n.\nMAIL FROM:<evil@example.org>\n.\n\r\n.\r\n", b"x\n.\r\nRSET\r\n.\r\n",
                        b"x\r.\rMAIL FROM:<e@x>\r\n.\r\n", b"x\x00y\r\n.\r\n"):
            r = self.raw()
            r.cmd("EHLO x")
            r.cmd("MAIL FROM:<a@example.org>")
            r.cmd("RCPT TO:<u@example.test>")
            r.cmd("DATA")
            r.send(b"Subject: s\r\n\r\n" + payload)
            code, text = r.reply()
            self.assertEqual(code, 554, repr(payload) + text)
            self.assertEqual(r.cmd("NOOP")[0], 250, "nothing inside the data was executed")
        self.assertEqual(self.new_messages(0), [])

    def test_hop_limit(self):
        r = self.raw()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<u@example.test>")
        r.cmd("DATA")
        r.send("".join("Received: from h%d\r\n" % i for i in range(101)) + "\r\nloop\r\n")
        code, text = r.cmd(".")
        self.assertEqual(code, 554)
        self.assertIn("5.4.0", text)

    def test_recipient_limit(self):
        r = self.raw()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        for i in range(20):
            self.assertEqual(r.cmd("RCPT TO:<u%d@example.test>" % i)[0], 250)
        code, text = r.cmd("RCPT TO:<u20@example.test>")
        self.assertEqual(code, 452)
        self.assertIn("4.5.3", text)

    def test_flood_without_newline_is_cut_off(self):
        r = self.raw()
        try:
            r.send(b"A" * 300000)
        except OSError:
            pass
        code, _ = r.reply()
        self.assertIn(code, (421, 0))
        self.assertTrue(r.closed())


class SmtpHooksTest(unittest.TestCase):
    """Event-bus verdicts through the real daemon, with the tests/abi "good" plugin."""

    def test_plugin_verdicts_and_header_edits(self):
        from harness import BINARY_DIR
        plugin_dir = os.path.join(BINARY_DIR, "tests", "abi", "plugins")
        if not os.path.exists(os.path.join(plugin_dir, "good.so")):
            self.skipTest("tests/abi plugins not built")
        d = Daemon(smtp_xml=SMTP_XML, smtp_attrs={"min-free-disk": "0"}, plugin_dirs=[plugin_dir],
                   plugins=[("good", "", {"reject-local": "bob", "tempfail-local": "carol"})])
        d.start()
        self.addCleanup(d.stop)
        with smtplib.SMTP("127.0.0.1", d.port()) as s:
            s.ehlo("hooks.example")
            s.mail("a@example.org")
            self.assertEqual(s.rcpt("bob@example.test"), (550, b"5.7.1 rejected by good"))
            self.assertEqual(s.rcpt("carol@example.test"), (451, b"4.7.1 try later, says good"))
            self.assertEqual(s.rcpt("dave@example.test")[0], 250)
            self.assertEqual(s.data(b"Subject: hooks\r\n\r\nbody\r\n")[0], 250)
        [m] = d.wait_for_messages(1)
        self.assertEqual([r["address"] for r in m["rcpts"]], ["dave@example.test"])
        self.assertTrue(m["message"].startswith(b"X-Good: seen\r\nReceived: from hooks.example "), m["message"][:200])

    def test_check_config_reports_smtp_errors_with_lines(self):
        d = Daemon(smtp_attrs={"max-message-size": "big"}, smtp_xml="<trusted-network>nonsense</trusted-network>")
        self.addCleanup(d.stop)
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        out = subprocess.run([d.binary, "--check-config", "--config", d.config_path],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stdout + out.stderr, r"postern\.xml:\d+: <smtp max-message-size=\"big\">")
        self.assertIn("<trusted-network>nonsense</trusted-network>", out.stdout + out.stderr)


class SmtpLimitsTest(unittest.TestCase):
    """Settings that need their own daemon."""

    def test_timeouts_sessions_and_early_talkers(self):
        d = Daemon(smtp_xml=SMTP_XML, smtp_attrs={"command-timeout": "1s", "max-sessions-per-ip": "2",
                                                   "greet-pause": "300ms", "min-free-disk": "0"})
        d.start()
        self.addCleanup(d.stop)
        # Early talker
        s = socket.create_connection(("127.0.0.1", d.port()), timeout=5)
        s.sendall(b"EHLO eager\r\n")
        self.assertTrue(s.recv(1000).startswith(b"554 5.5.0"))
        s.close()
        time.sleep(0.2)
        # Timeout → 421 4.4.2
        a = Raw(d.port())
        self.assertEqual(a.reply()[0], 220)
        code, text = a.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", text)
        a.close()
        time.sleep(0.2)
        # Per-IP session limit
        b1, b2 = Raw(d.port()), Raw(d.port())
        self.assertEqual(b1.reply()[0], 220)
        self.assertEqual(b2.reply()[0], 220)
        b3 = Raw(d.port())
        code, text = b3.reply()
        self.assertEqual(code, 421, text)
        self.assertIn("4.7.0", text)
        for c in (b1, b2, b3):
            c.close()

    def test_sigterm_stops_cleanly(self):
        d = Daemon(smtp_xml=SMTP_XML, smtp_attrs={"min-free-disk": "0"})
        d.start()
        r = Raw(d.port())
        self.assertEqual(r.reply()[0], 220)
        d.proc.send_signal(15)
        code, text = r.reply()
        self.assertIn(code, (421, 0), text)
        r.close()
        d.proc.wait(10)
        self.assertEqual(d.proc.returncode, 0, d.log())
        d.stop()


if __name__ == "__main__":
    unittest.main()
