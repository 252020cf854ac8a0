"""Issue 7 end to end: the pop3 service plugin in the real posternd, with mail
delivered over SMTP into the mailbox store and read back with Python's poplib
(110 + STLS and 995), curl, fetchmail, getmail6 and s-nail; DELE semantics,
[IN-USE], refused logins, STLS command injection, hostile input, floods, and
UIDL and bare-LF messages across a restart."""

import base64
import email
import os
import poplib
import shutil
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon  # noqa: E402

LOGIN_FAILURE = b"-ERR [AUTH] Login failure or POP3 disabled"


def listeners():
    return [
        {"name": "smtp", "protocol": "smtp", "tls": "starttls"},
        {"name": "pop3", "protocol": "pop3", "tls": "starttls", "cleartext-auth": "true"},
        {"name": "pop3s", "protocol": "pop3", "tls": "implicit"},
        {"name": "pop3strict", "protocol": "pop3", "tls": "starttls"},
    ]


def make_daemon(plugin_attrs):
    extra = ('<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>'
             '<queue retry="1h" delay-warning="0" destination-backoff="0"/>')
    return Daemon(smtp_xml="<local-domain>example.test</local-domain>",
                  smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"}, listeners=listeners(),
                  plugins=[("pop3", "", plugin_attrs)], extra_xml=extra, deliver=True)


def ctl(d, *args, stdin=None):
    p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", d.config_path, *args],
                       input=stdin, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("posternctl %s -> %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


def write_manifest_and_users(d, users):
    with open(d.config_path, "w") as f:
        f.write(d.manifest())
    for address, password in users:
        ctl(d, "user", "add", address, "--password-stdin", stdin=password + "\n")


def inbox(d, address):
    """[(uid, path, raw bytes)] of the account's INBOX from the index and the files."""
    local, domain = address.rsplit("@", 1)
    acct = os.path.join(d.data_dir, "mail", domain.lower(), local)
    index = os.path.join(acct, "index.sqlite")
    if not os.path.exists(index):
        return []
    db = sqlite3.connect("file:%s?mode=ro" % index, uri=True, timeout=10)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
            return []
        rows = db.execute("SELECT f.id, m.uid, m.file FROM messages m JOIN folders f ON f.id = m.folder_id "
                          "WHERE f.name = 'INBOX' ORDER BY m.uid").fetchall()
    finally:
        db.close()
    out = []
    for folder_id, uid, name in rows:
        for sub in ("cur", "tmp"):
            path = os.path.join(acct, "folders", str(folder_id), sub, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out.append((uid, path, f.read()))
                break
    return out


def inbox_dir(d, address):
    local, domain = address.rsplit("@", 1)
    acct = os.path.join(d.data_dir, "mail", domain.lower(), local)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(acct, "index.sqlite"), uri=True, timeout=10)
    try:
        (folder_id,) = db.execute("SELECT id FROM folders WHERE name = 'INBOX'").fetchone()
    finally:
        db.close()
    return os.path.join(acct, "folders", str(folder_id), "cur")


def deliver(d, rcpt, subject, body="hello\r\n"):
    msg = "From: sender@outside.example\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (rcpt, subject, body)
    with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as s:
        s.sendmail("sender@outside.example", [rcpt], msg.encode())
    end = time.time() + 15
    while time.time() < end:
        for uid, path, raw in inbox(d, rcpt):
            if ("Subject: %s\r\n" % subject).encode() in raw:
                return uid, raw
        time.sleep(0.05)
    raise AssertionError("%r never reached %s:\n%s" % (subject, rcpt, d.log()[-3000:]))


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A line-level POP3 client for what poplib cannot send."""

    def __init__(self, port, tls=False):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls_context().wrap_socket(sock) if tls else sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text):
        self.send(text.encode() + b"\r\n" if isinstance(text, str) else text)
        return self.line()

    def multi(self):
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line)

    def closed(self, timeout=5):
        """True when the server closes the connection within `timeout` (after any pending output)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        self.sock.close()


class Pop3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = make_daemon({"login-delay": "200ms", "login-delay-max": "800ms", "failure-window": "2s",
                             "idle-timeout": "3s", "max-failures": "3", "max-bad-commands": "10"})
        write_manifest_and_users(cls.d, [("alice@example.test", "a-pw"), ("bob@example.test", "b-pw"),
                                         ("carol@example.test", "c-pw"), ("dave@example.test", "d-pw"),
                                         ("erin@example.test", "e-pw"), ("frank@example.test", "f-pw")])
        ctl(cls.d, "user", "disable", "carol@example.test", "--service", "pop3")
        ctl(cls.d, "user", "disable", "dave@example.test")
        cls.d.start()
        cls.addClassCleanup(cls.d.stop)
        # Wait for the POP3 ports too (the harness waits for SMTP only).
        for name in ("pop3", "pop3s", "pop3strict"):
            end = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", cls.d.port(name)), timeout=1).close()
                    break
                except OSError:
                    if time.time() > end:
                        raise AssertionError("no %s listener:\n%s" % (name, cls.d.log()[-3000:]))
                    time.sleep(0.05)

    def pop(self, user, password, tls="stls"):
        if tls == "implicit":
            p = poplib.POP3_SSL("127.0.0.1", self.d.port("pop3s"), timeout=10, context=tls_context())
        else:
            p = poplib.POP3("127.0.0.1", self.d.port("pop3"), timeout=10)
            if tls == "stls":
                p.stls(context=tls_context())
        p.user(user)
        p.pass_(password)
        return p

    # -- retrieval -----------------------------------------------------------
    def test_retr_is_byte_identical_over_stls(self):
        body = "line one\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"
        uid, stored = deliver(self.d, "alice@example.test", "byte-identical", body)
        p = self.pop("alice@example.test", "a-pw")
        try:
            uidl = dict(l.split() for l in p.uidl()[1])
            num = [n for n, u in uidl.items() if u.endswith(b".%d" % uid)]
            self.assertEqual(len(num), 1, uidl)
            resp, lines, octets = p.retr(int(num[0]))
            # poplib undoes the dot-stuffing; the message must come back as stored.
            self.assertEqual(b"\r\n".join(lines) + b"\r\n", stored)
            self.assertEqual(resp, b"+OK %d octets" % len(stored))
            self.assertEqual(p.list(int(num[0])), b"+OK %s %d" % (num[0], len(stored)))
        finally:
            p.quit()

    def test_pop3s_implicit_tls_and_top(self):
        deliver(self.d, "bob@example.test", "top-test", "b1\r\nb2\r\nb3\r\n")
        p = self.pop("bob@example.test", "b-pw", tls="implicit")
        try:
            count, size = p.stat()
            self.assertGreaterEqual(count, 1)
            resp, lines, _ = p.top(count, 1)
            self.assertIn(b"Subject: top-test", lines)
            self.assertEqual(lines[-2:], [b"", b"b1"])
            caps = p.capa()
            self.assertIn("UIDL", caps)
            self.assertIn("RESP-CODES", caps)
            self.assertNotIn("APOP", caps)
        finally:
            p.quit()

    def test_dele_then_dropped_connection_keeps_the_message(self):
        uid, _ = deliver(self.d, "erin@example.test", "keep-me")
        p = self.pop("erin@example.test", "e-pw")
        count, _ = p.stat()
        self.assertEqual(p.dele(count), b"+OK Message %d deleted" % count)
        # Drop the connection without QUIT: no UPDATE state.
        p.file.close()
        p.sock.close()
        time.sleep(0.5)
        self.assertIn(uid, [u for u, _, _ in inbox(self.d, "erin@example.test")])
        # And the maildrop is free again once the server saw the close.
        end = time.time() + 5
        while True:
            try:
                p = self.pop("erin@example.test", "e-pw")
                break
            except poplib.error_proto as e:
                if b"[IN-USE]" not in e.args[0] or time.time() > end:
                    raise
                time.sleep(0.1)
        self.assertEqual(p.stat()[0], count)
        p.quit()

    def test_dele_and_quit_removes_and_retr_marks_seen(self):
        uid1, _ = deliver(self.d, "frank@example.test", "remove-me")
        uid2, _ = deliver(self.d, "frank@example.test", "read-me")
        p = self.pop("frank@example.test", "f-pw")
        uidl = {u.split(b".")[1]: int(n) for n, u in (l.split() for l in p.uidl()[1])}
        p.dele(uidl[b"%d" % uid1])
        p.retr(uidl[b"%d" % uid2])
        self.assertTrue(p.quit().startswith(b"+OK Bye, 1 messages deleted"))
        uids = [u for u, _, _ in inbox(self.d, "frank@example.test")]
        self.assertNotIn(uid1, uids)
        self.assertIn(uid2, uids)
        p = self.pop("frank@example.test", "f-pw")
        self.assertNotIn(b"%d" % uid1, [u.split(b".")[1] for _, u in (l.split() for l in p.uidl()[1])])
        p.quit()

    def test_second_session_gets_in_use(self):
        p = self.pop("alice@example.test", "a-pw")
        try:
            q = poplib.POP3("127.0.0.1", self.d.port("pop3"), timeout=10)
            q.user("alice@example.test")
            with self.assertRaises(poplib.error_proto) as e:
                q.pass_("a-pw")
            self.assertEqual(e.exception.args[0], b"-ERR [IN-USE] The maildrop is in use by another POP3 session")
            q.quit()
        finally:
            p.quit()
        self.pop("alice@example.test", "a-pw").quit()

    def test_new_mail_shows_at_the_next_login(self):
        p = self.pop("bob@example.test", "b-pw")
        before = p.stat()[0]
        deliver(self.d, "bob@example.test", "during-session")
        self.assertEqual(p.stat()[0], before)  # the maildrop is a snapshot
        p.quit()
        p = self.pop("bob@example.test", "b-pw")
        self.assertEqual(p.stat()[0], before + 1)
        p.quit()

    # -- refused logins ------------------------------------------------------
    def test_refused_logins_all_say_the_same(self):
        for user, pw in [("carol@example.test", "c-pw"),      # POP3 disabled for the account
                         ("dave@example.test", "d-pw"),       # account disabled
                         ("alice@example.test", "wrong"),     # wrong password
                         ("nobody@example.test", "x")]:       # unknown
            p = poplib.POP3("127.0.0.1", self.d.port("pop3"), timeout=10)
            p.user(user)
            with self.assertRaises(poplib.error_proto) as e:
                p.pass_(pw)
            self.assertEqual(e.exception.args[0], LOGIN_FAILURE, user)
            p.quit()

    def test_login_flood_is_delayed_and_closed(self):
        r = Raw(self.d.port("pop3"))
        delays = []
        for _ in range(3):
            r.cmd("USER alice@example.test")
            t0 = time.monotonic()
            self.assertEqual(r.cmd("PASS wrong-%d" % _), LOGIN_FAILURE)
            delays.append(time.monotonic() - t0)
        self.assertTrue(r.closed(), "the connection stays open after max-failures")
        # 200 ms doubling per failure (and per peer), capped at 800 ms.
        self.assertGreaterEqual(delays[0], 0.18)
        self.assertGreaterEqual(delays[1], 0.38)
        self.assertGreaterEqual(delays[2], 0.75)
        # The peer's count carries over to a new connection.
        r = Raw(self.d.port("pop3"))
        r.cmd("USER alice@example.test")
        t0 = time.monotonic()
        self.assertEqual(r.cmd("PASS wrong"), LOGIN_FAILURE)
        self.assertGreaterEqual(time.monotonic() - t0, 0.75)
        r.close()
        time.sleep(2.2)  # failure-window: forgotten

    # -- TLS -----------------------------------------------------------------
    def test_cleartext_refused_before_stls_on_a_strict_listener(self):
        r = Raw(self.d.port("pop3strict"))
        self.assertEqual(r.cmd("CAPA"), b"+OK Capability list follows")
        caps = r.multi()
        self.assertIn(b"STLS", caps)
        self.assertNotIn(b"USER", caps)
        self.assertTrue(r.cmd("USER alice@example.test").startswith(b"-ERR [AUTH] Plaintext authentication"))
        self.assertTrue(r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0a-pw").decode())
                        .startswith(b"-ERR [AUTH] Plaintext authentication"))
        self.assertEqual(r.cmd("STLS"), b"+OK Begin TLS negotiation")
        r.sock = tls_context().wrap_socket(r.sock)
        self.assertEqual(r.cmd("CAPA"), b"+OK Capability list follows")
        caps = r.multi()
        self.assertIn(b"USER", caps)
        self.assertNotIn(b"STLS", caps)
        self.assertEqual(r.cmd("AUTH PLAIN"), b"+ ")
        self.assertTrue(r.cmd(base64.b64encode(b"\0alice@example.test\0a-pw").decode()).startswith(b"+OK Logged in"))
        r.cmd("QUIT")
        r.close()

    def test_stls_command_injection_is_ignored(self):
        r = Raw(self.d.port("pop3strict"))
        # Commands pipelined behind STLS in the same packet must not run (RFC 2595 §4).
        r.send(b"STLS\r\nUSER alice@example.test\r\n")
        self.assertEqual(r.line(), b"+OK Begin TLS negotiation")
        self.assertEqual(r.buf, b"")
        r.sock = tls_context().wrap_socket(r.sock)
        self.assertEqual(r.cmd("PASS a-pw"), b"-ERR Send USER first")
        r.cmd("QUIT")
        r.close()

    # -- hostile input -------------------------------------------------------
    def test_hostile_input_gets_clear_errors(self):
        deliver(self.d, "bob@example.test", "hostile")
        r = Raw(self.d.port("pop3"))
        self.assertEqual(r.cmd("STAT"), b"-ERR Log in first (USER/PASS or AUTH)")
        self.assertEqual(r.cmd("RETR 1"), b"-ERR Log in first (USER/PASS or AUTH)")
        self.assertEqual(r.cmd(b"NO\0OP\r\n"), b"-ERR NUL octets are not allowed")
        self.assertEqual(r.cmd("X" * 100000), b"-ERR Line too long (the limit is 255 octets with CRLF)")
        self.assertEqual(r.cmd("APOP bob c4c9334bac560ecc979e58001b3e22fb"),
                         b"-ERR APOP is not available: use USER/PASS or AUTH PLAIN")
        self.assertEqual(r.cmd("USER bob@example.test"), b"+OK Send PASS")
        self.assertTrue(r.cmd("PASS b-pw").startswith(b"+OK Logged in"))
        count = int(r.cmd("STAT").split()[1])
        self.assertEqual(r.cmd("RETR %d" % (count + 1)), b"-ERR No such message")
        self.assertEqual(r.cmd("RETR 0"), b"-ERR No such message")
        self.assertEqual(r.cmd("RETR x"), b"-ERR Syntax: a message number is expected")
        self.assertEqual(r.cmd("DELE 1"), b"+OK Message 1 deleted")
        self.assertEqual(r.cmd("RETR 1"), b"-ERR Message 1 is deleted")
        self.assertEqual(r.cmd("TOP 1 5"), b"-ERR Message 1 is deleted")
        self.assertTrue(r.cmd("RSET").startswith(b"+OK %d messages" % count))
        self.assertEqual(r.cmd("QUIT"), b"+OK Bye")
        r.close()

    def test_too_many_bad_commands_close_the_connection(self):
        r = Raw(self.d.port("pop3"))
        for _ in range(9):
            self.assertEqual(r.cmd("BOGUS"), b"-ERR Unknown command")
        self.assertEqual(r.cmd("BOGUS"), b"-ERR Too many bad commands, closing the connection")
        self.assertTrue(r.closed())

    def test_pipelined_retr_all_in_one_write(self):
        for i in range(3):
            deliver(self.d, "bob@example.test", "pipe-%d" % i)
        r = Raw(self.d.port("pop3"))
        r.cmd("USER bob@example.test")
        r.cmd("PASS b-pw")
        count = int(r.cmd("STAT").split()[1])
        r.send(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)) + b"NOOP\r\n")
        for n in range(1, count + 1):
            self.assertTrue(r.line().endswith(b" octets"))
            r.multi()
        self.assertEqual(r.line(), b"+OK")
        r.cmd("QUIT")
        r.close()

    def test_idle_connection_is_closed(self):
        r = Raw(self.d.port("pop3"))
        t0 = time.monotonic()
        self.assertTrue(r.closed(timeout=10))
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)

    # -- real clients --------------------------------------------------------
    def test_curl_lists_and_retrieves(self):
        _, stored = deliver(self.d, "alice@example.test", "for-curl")
        url = "pop3://127.0.0.1:%d/" % self.d.port("pop3")
        out = subprocess.run(["curl", "-sS", "--ssl-reqd", "-k", "-u", "alice@example.test:a-pw", url],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.decode().strip().splitlines()
        self.assertIn("%d %d" % (len(lines), len(stored)), lines)
        out = subprocess.run(["curl", "-sS", "--ssl-reqd", "-k", "-u", "alice@example.test:a-pw",
                              url + str(len(lines))], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, stored)

    def test_fetchmail_getmail_and_snail(self):
        _, stored = deliver(self.d, "bob@example.test", "for-clients")
        work = tempfile.mkdtemp(prefix="pop3-clients-")
        os.chmod(work, 0o755)  # getmail delivers as nobody
        self.addCleanup(shutil.rmtree, work, True)
        port = self.d.port("pop3")
        # fetchmail: keep, over STLS, into an MDA that stores each message.
        out_dir = os.path.join(work, "fetchmail")
        os.mkdir(out_dir)
        mda = os.path.join(work, "mda.sh")
        with open(mda, "w") as f:
            f.write("#!/bin/sh\ncat > %s/msg.$$\n" % out_dir)
        os.chmod(mda, 0o755)
        rc = os.path.join(work, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('poll 127.0.0.1 service %d proto pop3 auth password user "bob@example.test" '
                    'password "b-pw" is root here keep fetchall sslproto "tls1.2+" no sslcertck '
                    'mda "%s"\n' % (port, mda))
        os.chmod(rc, 0o600)
        p = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "-v", "-i", os.path.join(work, "ids")],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=work))
        self.assertIn(p.returncode, (0,), p.stdout + p.stderr)
        got = []
        for name in os.listdir(out_dir):
            with open(os.path.join(out_dir, name), "rb") as f:
                got.append(f.read())
        self.assertTrue(any(b"Subject: for-clients" in g for g in got), p.stdout)
        # getmail6: SimplePOP3SSLRetriever is not needed: SimplePOP3Retriever over the cleartext-auth port.
        gdir = os.path.join(work, "getmail")
        maildir = os.path.join(work, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        os.mkdir(gdir)
        with open(os.path.join(gdir, "getmailrc"), "w") as f:
            f.write("[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %d\n"
                    "username = bob@example.test\npassword = b-pw\n\n"
                    "[destination]\ntype = Maildir\npath = %s/\nuser = nobody\n\n"
                    "[options]\nread_all = true\ndelete = false\n" % (port, maildir))
        os.system("chown -R nobody %s" % maildir)
        p = subprocess.run(["getmail", "--getmaildir", gdir, "--rcfile", "getmailrc"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        got = []
        for name in os.listdir(os.path.join(maildir, "new")):
            with open(os.path.join(maildir, "new", name), "rb") as f:
                got.append(f.read())
        self.assertTrue(any(b"Subject: for-clients" in g for g in got), p.stdout + p.stderr)
        # s-nail: header summary over POP3 (AUTH PLAIN).
        p = subprocess.run(["s-nail", "-:/", "-Sv15-compat", "-S", "pop3-no-apop", "-S", "pop3-auth=plain",
                            "-R", "-H", "-f", "pop3://bob%%40example.test:b-pw@127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=work))
        self.assertIn("for-clients", p.stdout, p.stdout + p.stderr)
        # Nothing was deleted by the keep/no-delete clients.
        self.assertIn(stored, [raw for _, _, raw in inbox(self.d, "bob@example.test")])


class Pop3RestartTest(unittest.TestCase):
    """UIDL across a restart, and a message stored with bare LFs."""

    def test_uidl_stable_and_bare_lf_sent_as_crlf(self):
        d = make_daemon({"login-delay": "0"})
        self.addCleanup(d.stop)
        write_manifest_and_users(d, [("alice@example.test", "a-pw")])
        d.start()
        deliver(d, "alice@example.test", "first")
        deliver(d, "alice@example.test", "second")

        def wait_pop3():
            end = time.time() + 10
            while True:
                try:
                    return poplib.POP3("127.0.0.1", d.port("pop3"), timeout=10)
                except OSError:
                    if time.time() > end:
                        raise
                    time.sleep(0.05)

        p = wait_pop3()
        p.user("alice@example.test")
        p.pass_("a-pw")
        before = p.uidl()[1]
        p.quit()
        self.assertEqual(len(before), 2)
        for line in before:
            self.assertRegex(line.decode(), r"^\d+ \d+\.\d+$")

        # A message with bare LFs and a leading dot, copied into the maildir by hand
        # (recovery indexes it at the next start).
        d.proc.send_signal(15)
        d.proc.wait(10)
        d.proc = None
        bare = b"From: x@example.test\nSubject: bare-lf\n\n.dot line\nplain\n"
        with open(os.path.join(inbox_dir(d, "alice@example.test"), "1700000000.M1P1Q1Rbare"), "wb") as f:
            f.write(bare)
        d.start()
        p = wait_pop3()
        p.user("alice@example.test")
        p.pass_("a-pw")
        after = p.uidl()[1]
        self.assertEqual(after[:2], before)  # unchanged across the restart
        self.assertEqual(len(after), 3)
        crlf = bare.replace(b"\n", b"\r\n")
        self.assertEqual(p.list(3), b"+OK 3 %d" % len(crlf))
        # Read the raw wire form: poplib would hide the stuffing.
        p._putcmd("RETR 3")
        self.assertEqual(p._getline()[0], b"+OK %d octets" % len(crlf))
        wire = b""
        while True:
            line = p.file.readline()
            wire += line
            if line == b".\r\n":
                break
        self.assertEqual(wire, b"From: x@example.test\r\nSubject: bare-lf\r\n\r\n..dot line\r\nplain\r\n.\r\n")
        stat = p.stat()
        p.quit()
        self.assertEqual(stat[0], 3)


if __name__ == "__main__":
    unittest.main()
