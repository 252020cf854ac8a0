"""Issue 5 end to end: mail sent over SMTP to an account, an alias, a list, a
forward (with and without a local copy) and a catch-all lands in the right
mailboxes, read back from the mailbox files and their SQLite index
(docs/mailstore.md); forwarded copies reach a real smtp-sink; over-quota
recipients get 452 4.2.2 at RCPT once the store's usage passes the quota."""

import email
import os
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon, free_port  # noqa: E402

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """smtp-sink (package postfix) writing each message it gets into `dir`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        self.port = free_port()
        self.proc = subprocess.Popen([SINK, "-u", "root", "-d", os.path.join(self.dir, "%M."),
                                      "127.0.0.1:%d" % self.port, "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def messages(self):
        out = []
        for root, _, files in os.walk(self.dir):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(email.message_from_bytes(fh.read()))
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def mailbox(data_dir, address, folder="INBOX"):
    """[(uid, email.message.Message, size, flags)] of one folder, from the index and the files."""
    local, domain = address.rsplit("@", 1)
    acct = os.path.join(data_dir, "mail", domain.lower(), local)
    index = os.path.join(acct, "index.sqlite")
    if not os.path.exists(index):
        return []
    db = sqlite3.connect("file:%s?mode=ro" % index, uri=True, timeout=10)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
            return []  # the store is being created right now
        rows = db.execute("SELECT f.id, m.uid, m.file, m.size, m.flags FROM messages m "
                          "JOIN folders f ON f.id = m.folder_id WHERE f.name = ? ORDER BY m.uid",
                          (folder,)).fetchall()
    finally:
        db.close()
    out = []
    for folder_id, uid, name, size, flags in rows:
        path = os.path.join(acct, "folders", str(folder_id), "cur", name)
        with open(path, "rb") as f:
            raw = f.read()
        assert len(raw) == size, "index size %d != file size %d for %s" % (size, len(raw), path)
        out.append((uid, email.message_from_bytes(raw), size, flags))
    return out


class LocalDeliveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink()
        extra = ('<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>'
                 '<queue retry="1h" delay-warning="0" destination-backoff="0"/>'
                 '<delivery><route match="*@sink.test" to="[127.0.0.1:%d]"/></delivery>' % cls.sink.port)
        cls.d = Daemon(smtp_xml="<local-domain>example.test</local-domain>",
                       smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"}, extra_xml=extra)
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        for args, stdin in [
            (("domain", "add", "other.test"), None),
            (("user", "add", "alice@example.test", "--password-stdin"), "a-pw\n"),
            (("user", "add", "bob@example.test", "--password-stdin"), "b-pw\n"),
            (("user", "add", "carol@example.test", "--password-stdin"), "c-pw\n"),
            (("user", "add", "dave@example.test", "--password-stdin"), "d-pw\n"),
            (("user", "add", "tiny@example.test", "--password-stdin", "--quota", "10k"), "t-pw\n"),
            (("user", "forward", "carol@example.test", "carol@sink.test", "--keep-copy"), None),
            (("user", "forward", "dave@example.test", "dave@sink.test"), None),
            (("alias", "add", "sales@example.test", "alice@example.test", "bob@example.test"), None),
            (("alias", "add", "*@other.test", "bob@example.test"), None),
            (("list", "add", "staff@example.test", "--policy", "anyone"), None),
            (("list", "members", "staff@example.test", "add", "alice@example.test", "carol@example.test"), None),
        ]:
            p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path, *args],
                               input=stdin, capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                raise AssertionError("posternctl %s -> %d: %s" % (" ".join(args), p.returncode, p.stderr))
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.sink.stop()

    def send(self, rcpt, subject, body="hello\r\n"):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=10) as s:
            s.sendmail("sender@outside.example", [rcpt],
                       "From: sender@outside.example\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (rcpt, subject, body))

    def wait_for(self, address, subject, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            for uid, msg, _, _ in mailbox(self.d.data_dir, address):
                if msg["Subject"] == subject:
                    return uid, msg
            time.sleep(0.1)
        self.fail("%r never reached %s; log:\n%s" % (subject, address, self.d.log()[-3000:]))

    def subjects(self, address):
        return [m["Subject"] for _, m, _, _ in mailbox(self.d.data_dir, address)]

    def test_account(self):
        self.send("alice@example.test", "to-alice")
        uid, msg = self.wait_for("alice@example.test", "to-alice")
        self.assertGreaterEqual(uid, 1)
        # RFC 5321 §4.4: the final delivery adds Return-Path; Delivered-To names the mailbox.
        self.assertEqual(msg["Return-Path"], "<sender@outside.example>")
        self.assertEqual(msg["Delivered-To"], "alice@example.test")
        self.assertIn("Received", msg)

    def test_forged_return_path_is_replaced(self):
        # RFC 5321 §4.4: a Return-Path that arrived with the message is not kept.
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=10) as s:
            s.sendmail("sender@outside.example", ["alice@example.test"],
                       "Return-Path: <forged@evil.example>\r\nFrom: sender@outside.example\r\n"
                       "Subject: forged-rp\r\n\r\nhello\r\n")
        _, msg = self.wait_for("alice@example.test", "forged-rp")
        self.assertEqual(msg.get_all("Return-Path"), ["<sender@outside.example>"])

    def test_alias_expands_to_every_target(self):
        self.send("sales@example.test", "to-sales")
        self.wait_for("alice@example.test", "to-sales")
        self.wait_for("bob@example.test", "to-sales")

    def test_list_delivers_to_members(self):
        self.send("staff@example.test", "to-staff")
        self.wait_for("alice@example.test", "to-staff")
        self.wait_for("carol@example.test", "to-staff")
        self.assertNotIn("to-staff", self.subjects("bob@example.test"))

    def test_catch_all(self):
        self.send("anything@other.test", "to-catch-all")
        self.wait_for("bob@example.test", "to-catch-all")

    def test_forward_with_and_without_local_copy(self):
        self.send("carol@example.test", "to-carol")
        self.send("dave@example.test", "to-dave")
        self.wait_for("carol@example.test", "to-carol")
        end = time.time() + 15
        while time.time() < end:
            got = {m["Subject"] for m in self.sink.messages()}
            if {"to-carol", "to-dave"} <= got:
                break
            time.sleep(0.1)
        self.assertLessEqual({"to-carol", "to-dave"}, {m["Subject"] for m in self.sink.messages()})
        time.sleep(0.5)
        self.assertNotIn("to-dave", self.subjects("dave@example.test"))

    def test_uids_ascend_and_index_matches_files(self):
        for i in range(5):
            self.send("alice@example.test", "burst-%d" % i)
        for i in range(5):
            self.wait_for("alice@example.test", "burst-%d" % i)
        uids = [uid for uid, _, _, _ in mailbox(self.d.data_dir, "alice@example.test")]
        self.assertEqual(uids, sorted(set(uids)))

    def test_unknown_user_is_refused_at_rcpt(self):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=10) as s:
            s.ehlo("client.example")
            s.mail("sender@outside.example")
            code, text = s.rcpt("nobody@example.test")
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.1.1", text)

    def test_over_quota_gets_452_at_rcpt(self):
        self.send("tiny@example.test", "fills-quota", body="x" * 3000 + "\r\n")
        self.wait_for("tiny@example.test", "fills-quota")
        # The administrator lowers the quota below what the mailbox holds.
        p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", self.d.config_path,
                            "user", "quota", "tiny@example.test", "2k"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        end = time.time() + 10
        code, text = 0, b""
        while time.time() < end:
            with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=10) as s:
                s.ehlo("client.example")
                s.mail("sender@outside.example")
                code, text = s.rcpt("tiny@example.test")
            if code == 452:
                break
            time.sleep(0.2)
        self.assertEqual(code, 452, text)
        self.assertIn(b"4.2.2", text)


if __name__ == "__main__":
    unittest.main()
