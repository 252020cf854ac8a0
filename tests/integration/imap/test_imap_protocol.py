"""The imap plugin over the wire (issue 6, M2): posternd with a starttls IMAP
listener, driven by Python's imaplib, raw sockets and curl.

Covers login rules (LOGINDISABLED, STARTTLS without command injection), the
core commands, UIDPLUS/MOVE/CONDSTORE responses, two sessions on one mailbox
seeing each other's EXISTS/EXPUNGE/FETCH FLAGS, IDLE, and hostile input.
"""
import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon  # noqa: E402

MESSAGE = (b"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: %s\r\n"
           b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <%s@example.net>\r\n\r\nHello %s.\r\n")


def message(n):
    tag = str(n).encode()
    return MESSAGE % (b"msg " + tag, tag, tag)


def wait_for_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


class Raw:
    """A line-oriented raw IMAP client (for what imaplib hides)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self, timeout=10):
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until_tagged(self, tag, timeout=10):
        lines = []
        while True:
            l = self.line(timeout)
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines

    def close(self):
        self.sock.close()


class ImapProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        listeners = [
            {"name": "smtp", "protocol": "smtp", "tls": "starttls"},
            {"name": "imap", "protocol": "imap", "tls": "starttls", "cleartext-auth": "true"},
            {"name": "imap-strict", "protocol": "imap", "tls": "starttls"},
        ]
        extra = '<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>'
        cls.d = Daemon(smtp_xml="<local-domain>example.test</local-domain>", listeners=listeners,
                       plugins=[("imap", "", {"idle-poll": "300ms", "login-failure-delay": "200ms"})],
                       extra_xml=extra)
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        for user in ("alice", "bob", "carol", "dave"):
            p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path, "user", "add",
                                "%s@example.test" % user, "--password-stdin"],
                               input="%s-pw\n" % user, capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                raise AssertionError("posternctl user add -> %d: %s" % (p.returncode, p.stderr))
        cls.d.start()
        wait_for_port(cls.d.port("imap"))
        wait_for_port(cls.d.port("imap-strict"))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def client(self, user="alice"):
        c = imaplib.IMAP4("127.0.0.1", self.d.port("imap"))
        typ, _ = c.login("%s@example.test" % user, "%s-pw" % user)
        self.assertEqual(typ, "OK")
        return c

    def test_capabilities_and_logindisabled_before_tls(self):
        r = Raw(self.d.port("imap-strict"))
        self.assertIn(b"STARTTLS", r.greeting)
        self.assertIn(b"LOGINDISABLED", r.greeting)
        r.send(b"a LOGIN alice@example.test alice-pw\r\n")
        self.assertEqual(r.until_tagged(b"a")[-1], b"a NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
        r.close()
        c = imaplib.IMAP4("127.0.0.1", self.d.port("imap"))
        for cap in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "ID", "LITERAL+", "SPECIAL-USE",
                    "CONDSTORE", "UNSELECT", "ENABLE", "AUTH=PLAIN"):
            self.assertIn(cap, c.capabilities)
        c.logout()

    def test_starttls_discards_injected_commands(self):
        r = Raw(self.d.port("imap-strict"))
        # RFC 3501 §6.2.1 / CVE-2011-0411 style: the second command rides in the same packet.
        r.send(b"a STARTTLS\r\nb LOGIN alice@example.test alice-pw\r\n")
        self.assertEqual(r.line(), b"a OK Begin TLS negotiation now")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(r.sock, server_hostname="mx.example.test")
        tls.settimeout(2)
        tls.sendall(b"c CAPABILITY\r\n")
        data = b""
        while b"c OK" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        self.assertNotIn(b"b OK", data)
        self.assertNotIn(b"b NO", data)
        self.assertIn(b"AUTH=PLAIN", data)
        self.assertNotIn(b"LOGINDISABLED", data)
        tls.sendall(b"d LOGIN alice@example.test alice-pw\r\n")
        data = b""
        while b"d " not in data:
            data += tls.recv(65536)
        self.assertIn(b"d OK", data)
        tls.close()

    def test_select_fetch_store_expunge(self):
        c = self.client("bob")
        for n in (1, 2, 3):
            typ, data = c.append("INBOX", None, None, message(n))
            self.assertEqual(typ, "OK")
            self.assertRegex(data[0], rb"\[APPENDUID \d+ %d\]" % n)
        typ, data = c.select("INBOX")
        self.assertEqual(data, [b"3"])
        typ, data = c.fetch("1:3", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
        self.assertEqual(len(data), 3)
        self.assertRegex(data[0], rb'1 \(UID 1 FLAGS \(\\Recent\) RFC822.SIZE %d INTERNALDATE "' % len(message(1)))
        typ, data = c.fetch("2", "(BODY.PEEK[])")
        self.assertEqual(data[0][1], message(2))
        typ, data = c.fetch("2", "(FLAGS)")
        self.assertNotIn(b"\\Seen", data[0])
        typ, data = c.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(data[0][1], b"Subject: msg 2\r\n\r\n")
        typ, data = c.fetch("2", "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])
        typ, data = c.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
        self.assertIn(b'"msg 1"', data[0])
        self.assertIn(b'"TEXT" "PLAIN"', data[0].upper())
        typ, data = c.store("1", "+FLAGS", r"(\Deleted)")
        self.assertIn(b"\\Deleted", data[0])
        typ, data = c.expunge()
        self.assertEqual(data, [b"1"])
        typ, data = c.uid("SEARCH", None, "ALL")
        self.assertEqual(data, [b"2 3"])
        typ, data = c.search(None, "SUBJECT", '"msg 3"')
        self.assertEqual(data, [b"2"])
        c.close()
        c.logout()

    def test_mailboxes_copy_move_status(self):
        c = self.client("carol")
        self.assertEqual(c.create("Projects/Entw&APw-rfe")[0], "OK")
        typ, data = c.list('""', "Projects/*")
        self.assertEqual(data, [b'(\\HasNoChildren) "/" "Projects/Entw&APw-rfe"'])
        typ, data = c.list('""', "*")
        self.assertTrue(any(b"\\Sent" in l and b'"Sent"' in l for l in data), data)
        self.assertEqual(c.append("INBOX", r"(\Flagged)", None, message(10))[0], "OK")
        self.assertEqual(c.append("INBOX", None, None, message(11))[0], "OK")
        c.select("INBOX")
        typ, data = c.copy("1:2", "Projects/Entw&APw-rfe")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\[COPYUID \d+ 1:2 1:2\]")
        typ, data = c.uid("MOVE", "1", "Archive")
        self.assertEqual(typ, "OK")
        self.assertEqual(c.untagged_responses.get("EXPUNGE"), [b"1"])
        typ, data = c.status("Projects/Entw&APw-rfe", "(MESSAGES UIDNEXT UNSEEN)")
        self.assertEqual(data, [b'"Projects/Entw&APw-rfe" (MESSAGES 2 UIDNEXT 3 UNSEEN 2)'])
        typ, data = c.copy("1", "Nowhere")
        self.assertEqual(typ, "NO")
        self.assertIn(b"[TRYCREATE]", data[0])
        self.assertEqual(c.rename("Projects", "Work")[0], "OK")
        self.assertEqual(c.delete("Work/Entw&APw-rfe")[0], "OK")
        typ, data = c.create("../etc")
        self.assertEqual(typ, "NO")
        c.logout()

    def test_two_sessions_see_each_other(self):
        a = self.client("dave")
        b = self.client("dave")
        for n in (1, 2):
            a.append("INBOX", None, None, message(n))
        a.select("INBOX")
        b.select("INBOX")
        b.store("2", "+FLAGS", r"(\Deleted)")
        b.expunge()
        b.append("INBOX", None, None, message(3))
        b.store("1", "+FLAGS", r"(\Answered)")
        # No EXPUNGE during FETCH without UID (RFC 3501 §7.4.1): message 2 keeps its number.
        typ, data = a.fetch("2", "(UID)")
        self.assertIn(b"UID 2", data[0])
        self.assertNotIn("EXPUNGE", a.untagged_responses)
        a.noop()
        self.assertEqual(a.untagged_responses.pop("EXPUNGE", None), [b"2"])
        # imaplib keeps SELECT's EXISTS too: the last one is NOOP's.
        self.assertEqual(a.untagged_responses.pop("EXISTS", [None])[-1], b"2")
        fetches = a.untagged_responses.pop("FETCH", [])
        self.assertTrue(any(b"\\Answered" in f for f in fetches), fetches)
        typ, data = a.fetch("2", "(UID)")
        self.assertIn(b"UID 3", data[0])
        a.logout()
        b.logout()

    def test_idle_reports_new_mail(self):
        c = self.client("alice")
        typ, data = c.select("INBOX")
        before = int(data[0])
        r = Raw(self.d.port("imap"))
        r.send(b"a LOGIN alice@example.test alice-pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
        lines = r.until_tagged(b"b")
        self.assertEqual(r.line(), b"+ idling")
        c.append("INBOX", None, None, message(99))
        self.assertEqual(r.line(timeout=5), b"* %d EXISTS" % (before + 1))
        r.send(b"DONE\r\n")
        lines = r.until_tagged(b"c")
        self.assertEqual(lines[-1], b"c OK IDLE terminated")
        r.close()
        c.logout()

    def test_literals_condstore_and_hostile_input(self):
        r = Raw(self.d.port("imap"))
        # A synchronizing literal gets "+", a LITERAL+ one does not.
        r.send(b"a LOGIN {17}\r\n")
        self.assertTrue(r.line().startswith(b"+ "))
        r.send(b"alice@example.test"[:17] + b" {8+}\r\nalice-pw\r\n")
        out = r.until_tagged(b"a")
        self.assertEqual(out[-1][:4], b"a NO")  # "alice@example.tes" is not the login
        r.send(b"b LOGIN {18+}\r\nalice@example.test {8+}\r\nalice-pw\r\n")
        self.assertTrue(r.until_tagged(b"b")[-1].startswith(b"b OK"))
        r.send(b"c ENABLE CONDSTORE\r\n")
        self.assertEqual(r.until_tagged(b"c"), [b"* ENABLED CONDSTORE", b"c OK ENABLE completed"])
        r.send(b"d SELECT INBOX\r\n")
        self.assertTrue(any(l.startswith(b"* OK [HIGHESTMODSEQ ") for l in r.until_tagged(b"d")))
        r.send(b"e FETCH 1:4294967294 FLAGS\r\n")
        self.assertEqual(r.until_tagged(b"e")[-1], b"e BAD Invalid message sequence number")
        r.send(b"f SEARCH " + b"(" * 200 + b"ALL" + b")" * 200 + b"\r\n")
        self.assertEqual(r.until_tagged(b"f")[-1], b"f BAD Too deeply nested")
        r.send(b"g NOOP " + b"x" * 100000 + b"\r\n")
        self.assertEqual(r.until_tagged(b"g")[-1], b"g BAD Command line too long")
        r.send(b"h APPEND INBOX {999999999}\r\n")
        self.assertTrue(r.until_tagged(b"h")[-1].startswith(b"h NO [TOOBIG]"))
        r.send(b"i SELECT \"&Jjo\"\r\n")
        self.assertEqual(r.until_tagged(b"i")[-1], b"i NO Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)")
        r.send(b"j ID (\"name\" \"test\")\r\nk NAMESPACE\r\n")
        out = r.until_tagged(b"k")
        self.assertIn(b'* NAMESPACE (("" "/")) NIL NIL', out)
        r.send(b"l LOGOUT\r\n")
        self.assertEqual(r.until_tagged(b"l")[-1], b"l OK LOGOUT completed")
        r.close()

    def test_login_failures_disconnect(self):
        r = Raw(self.d.port("imap"))
        start = time.monotonic()
        for i in range(2):
            r.send(b"t%d LOGIN alice@example.test wrong\r\n" % i)
            self.assertEqual(r.until_tagged(b"t%d" % i)[-1],
                             b"t%d NO [AUTHENTICATIONFAILED] Authentication failed" % i)
        self.assertGreaterEqual(time.monotonic() - start, 0.5)  # 200ms, then 400ms
        r.send(b"t2 LOGIN alice@example.test wrong\r\n")
        r.until_tagged(b"t2")
        self.assertEqual(r.line(), b"* BYE Too many authentication failures")
        with self.assertRaises((EOFError, OSError)):
            r.line(timeout=5)
        r.close()

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_lists_and_fetches(self):
        c = self.client("alice")
        c.append("INBOX", None, None, message(7))
        c.logout()
        url = "imap://127.0.0.1:%d/" % self.d.port("imap")
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice@example.test:alice-pw", url],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b'"INBOX"', p.stdout)
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice@example.test:alice-pw",
                            url + "INBOX;UID=1"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"Subject: ", p.stdout)


if __name__ == "__main__":
    unittest.main()
