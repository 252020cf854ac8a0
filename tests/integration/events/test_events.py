"""ABI 1.3 on a real posternd: edits from a pending hook and mailbox events.

One daemon with the imap plugin and the events_probe test plugin
(tests/abi/events_probe.cpp). At data_end events_probe defers and, from its own
thread 50 ms later, adds a header and a recipient through the pending handle,
then completes; it also subscribes to mailbox events and writes one line per
event to <data>/state/events_probe/events.log. The imap plugin's idle-poll is
set to 10 minutes, so an IDLE update within seconds can only come from an event.
"""

import imaplib
import os
import re
import smtplib
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, BINARY_DIR, Daemon  # noqa: E402

DOMAIN = "example.test"
ABI_PLUGIN_DIR = os.path.join(BINARY_DIR, "tests", "abi", "plugins")
ACCOUNTS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


def message(subject, msgid):
    return ("From: Sender <sender@outside.example>\r\nTo: alice@%s\r\nSubject: %s\r\n"
            "Message-ID: <%s>\r\n\r\nbody\r\n" % (DOMAIN, subject, msgid)).encode()


class EventsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(
            listeners=[{"name": "smtp", "protocol": "smtp", "tls": "none"},
                       {"name": "imap", "protocol": "imap", "tls": "none", "cleartext-auth": "true"}],
            plugins=[("imap", "", {"idle-poll": "10m"}),
                     ("events_probe", "", {"add-header": "X-Pending-Edit: from-a-thread",
                                           "add-rcpt": "bob@" + DOMAIN, "delay": "50",
                                           "events-log": "events.log", "timeout": "5s"})],
            plugin_dirs=[os.path.join(BINARY_DIR, "plugins"), ABI_PLUGIN_DIR],
            smtp_xml="<local-domain>%s</local-domain>" % DOMAIN,
            smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"},
            extra_xml='<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>',
            deliver=True)
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        for local, pw in ACCOUNTS.items():
            p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path, "user", "add",
                                "%s@%s" % (local, DOMAIN), "--password-stdin"], input=(pw + "\n").encode(),
                               capture_output=True, timeout=60)
            if p.returncode != 0:
                raise AssertionError("posternctl user add %s: %r %r" % (local, p.stdout, p.stderr))
        cls.d.start()
        end = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", cls.d.port("imap")), timeout=1):
                    break
            except OSError:
                if time.monotonic() > end:
                    cls.d.stop()
                    raise AssertionError("the IMAP listener never opened")
                time.sleep(0.05)
        cls.events_log = os.path.join(cls.d.data_dir, "state", "events_probe", "events.log")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def send(self, raw, rcpt="alice"):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=20) as s:
            s.ehlo("client.example")
            s.sendmail("sender@outside.example", ["%s@%s" % (rcpt, DOMAIN)], raw)

    def imap(self, local):
        m = imaplib.IMAP4("127.0.0.1", self.d.port("imap"), timeout=20)
        self.addCleanup(self.close, m)
        typ, data = m.login("%s@%s" % (local, DOMAIN), ACCOUNTS[local])
        self.assertEqual(typ, "OK", data)
        return m

    @staticmethod
    def close(m):
        try:
            m.logout()
        except Exception:
            pass

    def find(self, local, msgid, timeout=20):
        """(session, UID) of the INBOX message with that Message-ID, once delivered."""
        m = self.imap(local)
        end = time.monotonic() + timeout
        while True:
            typ, data = m.select("INBOX")
            self.assertEqual(typ, "OK", data)
            typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<%s>" % msgid)
            self.assertEqual(typ, "OK", data)
            if data[0]:
                return m, data[0].split()[-1].decode()
            if time.monotonic() > end:
                self.fail("%s never reached %s; log:\n%s" % (msgid, local, self.d.log()[-4000:]))
            time.sleep(0.1)

    def event_lines(self, pattern, timeout=10):
        end = time.monotonic() + timeout
        while True:
            try:
                with open(self.events_log) as f:
                    lines = f.read().splitlines()
            except OSError:
                lines = []
            hits = [l for l in lines if re.search(pattern, l)]
            if hits or time.monotonic() > end:
                return hits, lines
            time.sleep(0.05)

    def test_pending_hook_adds_header_and_recipient_from_its_thread(self):
        self.send(message("pending edits", "edit-1@outside.example"))
        for local in ("alice", "bob"):
            m, uid = self.find(local, "edit-1@outside.example")
            typ, data = m.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
            self.assertEqual(typ, "OK", data)
            header = data[0][1].decode()
            self.assertIn("X-Pending-Edit: from-a-thread\r\n", header, "%s's copy: %s" % (local, header))
            self.assertEqual(header.count("X-Pending-Edit:"), 1, header)
        hits, lines = self.event_lines(r"^stored actor=delivery account=bob@%s folder=INBOX " % DOMAIN)
        self.assertTrue(hits, "no stored event for the added recipient: %r" % lines)

    def test_idle_sees_exists_promptly_after_smtp_delivery(self):
        self.send(message("idle before", "idle-0@outside.example"), rcpt="carol")
        m, _ = self.find("carol", "idle-0@outside.example")
        typ, data = m.select("INBOX")
        before = int(data[0])
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        m.sock.settimeout(20)
        self.assertTrue(m.readline().startswith(b"+"))
        start = time.monotonic()
        self.send(message("idle wake", "idle-1@outside.example"), rcpt="carol")
        seen = []
        while True:
            try:
                line = m.readline()
            except socket.timeout:
                self.fail("no EXISTS within 20 s while idling (idle-poll is 10 min); got %r" % seen)
            self.assertTrue(line, "connection closed while idling: %r" % seen)
            seen.append(line)
            match = re.match(rb"\* (\d+) EXISTS", line)
            if match:
                self.assertEqual(int(match.group(1)), before + 1, seen)
                break
        latency = time.monotonic() - start
        # SMTP, the 50 ms pending hook, queue delivery and the wake; a poll would take 10 minutes.
        self.assertLess(latency, 5.0, "EXISTS came %.2f s after the delivery started" % latency)
        sys.stderr.write("IDLE: EXISTS %.0f ms after the SMTP delivery started\n" % (latency * 1000))
        m.send(b"DONE\r\n")
        while True:
            line = m.readline()
            self.assertTrue(line)
            if line.startswith(tag + b" "):
                self.assertTrue(line.startswith(tag + b" OK"), line)
                break

    def test_imaplib_move_raises_a_moved_event(self):
        self.send(message("to move", "move-1@outside.example"))
        m, uid = self.find("alice", "move-1@outside.example")
        typ, data = m.uid("MOVE", uid, "Archive")
        self.assertEqual(typ, "OK", data)
        pattern = (r"^moved actor=imap account=alice@%s folder=INBOX target=Archive uids=%s target-uids=\d+ size=\d+$"
                   % (re.escape(DOMAIN), uid))
        hits, lines = self.event_lines(pattern)
        self.assertTrue(hits, "no moved event for UID %s; events:\n%s" % (uid, "\n".join(lines)))
        new_uid = re.search(r"target-uids=(\d+)", hits[-1]).group(1)
        m.select("Archive")
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<move-1@outside.example>")
        self.assertEqual(data[0].decode().split()[-1], new_uid)


if __name__ == "__main__":
    unittest.main()
