"""Issue 6 (M2) with real clients: the imap plugin served by posternd, mail
delivered over SMTP into the mailbox store and read, changed and synchronised
by the clients people use: curl (imap://, imaps://, STARTTLS), mbsync (isync),
offlineimap3, mutt and neomutt (under tmux) and Python's imaplib (STARTTLS, LOGINDISABLED,
IDLE, two sessions on one mailbox).

One posternd serves every test, with listeners
  smtp         SMTP, STARTTLS
  imap         IMAP, STARTTLS offered, cleartext-auth="true" (LOGIN before TLS)
  imap-strict  IMAP, STARTTLS, cleartext-auth off (LOGINDISABLED until TLS)
  imaps        IMAP over implicit TLS
and one account per test group, so the groups do not see each other's mail.
The generated certificate names the server (mx.example.test): curl reaches it
through --resolve, imaplib verifies the chain only; mutt trusts it through
certificate_file with ssl_verify_host off; mbsync and offlineimap (which match
the certificate against "127.0.0.1") use the imap listener without TLS.

A client test skips only when its binary is missing (CI installs isync,
offlineimap3, mutt, tmux and curl). Every process a test starts is stopped by
its PID (tmux: its private server socket) in a cleanup.
"""

import email
import email.policy
import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon, free_port  # noqa: E402

DOMAIN = "example.test"
SERVER_NAME = "mx.example.test"
# One account per group of tests: (local part, password).
ACCOUNTS = {
    "bytes": ("alice", "alice-pw"),
    "curl": ("erin", "erin-pw"),
    "mbsync": ("bob", "bob-pw"),
    "offlineimap": ("carol", "carol-pw"),
    "mutt": ("dave", "dave-pw"),
    "neomutt": ("ivan", "ivan-pw"),
    "imaplib": ("frank", "frank-pw"),
    "idle": ("grace", "grace-pw"),
    "shared": ("heidi", "heidi-pw"),
}
# Header fields the server adds in front of the message it received: the
# SMTP engine's trace field and the local delivery's (RFC 5321 §4.4).
TRACE_FIELDS = ("received", "return-path", "delivered-to")


def address(group):
    return "%s@%s" % (ACCOUNTS[group][0], DOMAIN)


def password(group):
    return ACCOUNTS[group][1]


def split_trace(fetched):
    """(names of the leading trace fields, the rest) of a message as fetched."""
    names = []
    rest = fetched
    while True:
        m = re.match(rb"([A-Za-z-]+):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", rest)
        if not m or m.group(1).decode().lower() not in TRACE_FIELDS:
            return names, rest
        names.append(m.group(1).decode())
        rest = rest[m.end():]


def make_message(subject, body, msgid, extra_headers=""):
    return ("From: Sender <sender@outside.example>\r\nTo: someone@%s\r\nSubject: %s\r\n"
            "Date: Mon, 3 Nov 2025 10:00:00 +0000\r\nMessage-ID: <%s>\r\n%s\r\n%s"
            % (DOMAIN, subject, msgid, extra_headers, body)).encode()


def run(args, timeout=60, **kw):
    """subprocess.run with the output kept for the failure message."""
    return subprocess.run(args, capture_output=True, timeout=timeout, **kw)


def transcript(p):
    return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (
        p.returncode, p.stdout.decode("utf-8", "replace") if isinstance(p.stdout, bytes) else p.stdout,
        p.stderr.decode("utf-8", "replace") if isinstance(p.stderr, bytes) else p.stderr)


def need(binary):
    path = shutil.which(binary)
    if not path:
        raise unittest.SkipTest("%s is not installed (Debian package: %s)" % (binary, {
            "mbsync": "isync", "offlineimap": "offlineimap3", "mutt": "mutt", "neomutt": "neomutt",
            "tmux": "tmux", "curl": "curl"}.get(binary, binary)))
    return path


def maildir_files(folder):
    """{path: bytes} of every message in a Maildir folder (new and cur)."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(folder, sub)
        if os.path.isdir(d):
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    out[os.path.join(d, n)] = f.read()
    return out


def from_maildir(data):
    """A message as a Maildir client wrote it, back in IMAP form: CRLF line
    ends (mbsync and offlineimap store LF) and without mbsync's X-TUID field
    (its own tracking header, added to every message it copies)."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r\n", b"", data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def maildir_flags(path):
    name = os.path.basename(path)
    return name.split(":2,", 1)[1] if ":2," in name else ""


class DovecotReference:
    """POSTERN_IMAP_REFERENCE=dovecot runs this file against a private Dovecot
    instead of posternd, to check the tests themselves against a reference
    server. Mail is "delivered" by APPENDing it with the trace fields posternd
    adds. Dovecot cannot refuse cleartext LOGIN on one port only, so the
    imap-strict tests skip there."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-imap-ref-")
        os.chmod(self.dir, 0o755)
        for d in ("run", "state", "home", "tls"):
            os.makedirs(os.path.join(self.dir, d))
        os.chown(os.path.join(self.dir, "home"), 65534, 65534)
        self.ports = {"imap": free_port(), "imaps": free_port(), "imap-strict": free_port()}
        self.cert = os.path.join(self.dir, "tls", "cert.pem")
        key = os.path.join(self.dir, "tls", "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=" + SERVER_NAME, "-addext", "subjectAltName=DNS:" + SERVER_NAME,
                        "-keyout", key, "-out", self.cert], check=True, capture_output=True)
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for group in ACCOUNTS:
                f.write("%s:{PLAIN}%s\n" % (address(group), password(group)))
        self.log_path = os.path.join(self.dir, "dovecot.log")
        conf = os.path.join(self.dir, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{d}/tls/cert.pem
ssl_key = <{d}/tls/key.pem
disable_plaintext_auth = no
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
  inet_listener strict {{
    address = 127.0.0.1
    port = {strict}
  }}
}}
""".format(d=self.dir, imap=self.ports["imap"], imaps=self.ports["imaps"], strict=self.ports["imap-strict"]))
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)

    def port(self, name):
        return self.ports[name]

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def deliver(self, rcpt, raw):
        group = next(g for g in ACCOUNTS if address(g) == rcpt)
        trace = ("Return-Path: <sender@outside.example>\r\nDelivered-To: %s\r\n"
                 "Received: from client.example (localhost [127.0.0.1])\r\n\tby %s; Mon, 3 Nov 2025 10:00:00 +0000\r\n"
                 % (rcpt, SERVER_NAME)).encode()
        m = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=20)
        try:
            m.login(rcpt, password(group))
            typ, data = m.append("INBOX", None, None, trace + raw)
            if typ != "OK":
                raise AssertionError("reference APPEND: %r" % data)
        finally:
            m.logout()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


REFERENCE = os.environ.get("POSTERN_IMAP_REFERENCE") == "dovecot"


class ImapClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="postern-imap-clients-")
        if REFERENCE:
            cls.d = DovecotReference()
            cls.cert = cls.d.cert
            for name in ("imap", "imap-strict", "imaps"):
                cls.wait_port(cls.d.port(name))
            return
        cls.d = Daemon(
            listeners=[
                {"name": "smtp", "protocol": "smtp", "tls": "starttls"},
                {"name": "imap", "protocol": "imap", "tls": "starttls", "cleartext-auth": "true"},
                {"name": "imap-strict", "protocol": "imap", "tls": "starttls"},
                {"name": "imaps", "protocol": "imap", "tls": "implicit"},
            ],
            plugins=[("imap", "")],
            server_name=SERVER_NAME,
            smtp_xml="<local-domain>%s</local-domain>" % DOMAIN,
            smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"},
            extra_xml='<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>',
            deliver=True)
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        for group in ACCOUNTS:
            p = run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path,
                     "user", "add", address(group), "--password-stdin"], input=(password(group) + "\n").encode())
            if p.returncode != 0:
                raise AssertionError("posternctl user add %s: %s" % (address(group), transcript(p)))
        cls.d.start()
        try:
            for name in ("imap", "imap-strict", "imaps"):
                cls.wait_port(cls.d.port(name))
        except Exception:
            cls.d.stop()
            raise
        cls.cert = os.path.join(cls.d.dir, "tls", "cert.pem")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def wait_port(cls, port, timeout=20):
        end = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError("IMAP listener %d never opened; log:\n%s" % (port, cls.d.log()[-4000:]))
                time.sleep(0.05)

    # -- helpers ------------------------------------------------------------
    def workdir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False  # imaplib passes the IP; the chain is still verified
        return ctx

    def imap(self, group, listener="imap"):
        """A logged-in imaplib session of the group's account."""
        m = imaplib.IMAP4("127.0.0.1", self.d.port(listener), timeout=20)
        self.addCleanup(self.close_imap, m)
        typ, data = m.login(address(group), password(group))
        self.assertEqual(typ, "OK", data)
        return m

    @staticmethod
    def close_imap(m):
        try:
            m.logout()
        except Exception:
            try:
                m.shutdown()
            except Exception:
                pass

    def deliver(self, group, raw):
        """Sends `raw` over SMTP to the group's account."""
        if REFERENCE:
            return self.d.deliver(address(group), raw)
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=20) as s:
            s.ehlo("client.example")
            opts = ["BODY=8BITMIME"] if any(b > 127 for b in raw) else []
            s.sendmail("sender@outside.example", [address(group)], raw, mail_options=opts)

    def wait_for_uid(self, group, msgid, timeout=20):
        """UID of the INBOX message with that Message-ID, once delivered."""
        m = self.imap(group)
        end = time.monotonic() + timeout
        while True:
            typ, data = m.select("INBOX")
            self.assertEqual(typ, "OK", data)
            typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<%s>" % msgid)
            self.assertEqual(typ, "OK", data)
            if data[0].split():
                return int(data[0].split()[-1])
            if time.monotonic() > end:
                self.fail("<%s> never appeared in %s's INBOX; log:\n%s" % (msgid, address(group), self.d.log()[-4000:]))
            time.sleep(0.2)

    def fetch(self, m, uid, item):
        typ, data = m.uid("FETCH", str(uid), "(%s)" % item)
        self.assertEqual(typ, "OK", data)
        for part in data:
            if isinstance(part, tuple):
                return part[1]
        self.fail("no literal in FETCH %s %s: %r" % (uid, item, data))

    def flags_by_msgid(self, group):
        """{Message-ID: set of flags} of the group's INBOX (from a fresh session)."""
        m = self.imap(group)
        typ, data = m.select("INBOX", readonly=True)
        self.assertEqual(typ, "OK", data)
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ == "OK" and data == [None]:
            return {}
        self.assertEqual(typ, "OK", data)
        out = {}
        for part in data:
            if isinstance(part, tuple):
                flags = set(imaplib.ParseFlags(part[0]))
                mid = email.message_from_bytes(part[1])["Message-ID"]
                out[mid.strip("<> ") if mid else None] = {f.decode() for f in flags}
        self.close_imap(m)
        return out

    # -- delivery and byte identity ------------------------------------------
    def test_delivered_message_is_fetched_byte_for_byte(self):
        body = ("Line one\r\n"
                ".leading dot (SMTP dot-stuffs it, the store must not keep the extra dot)\r\n"
                "..two dots\r\n"
                "trailing spaces and a tab \t \r\n"
                "8-bit UTF-8: Gr\u00fc\u00dfe, \u65e5\u672c\u8a9e\r\n"
                + "long line " + "x" * 900 + "\r\n"
                "\r\n"
                "last line\r\n")
        raw = make_message("bytes check", "", "bytes-1@outside.example",
                           extra_headers="MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                         "Content-Transfer-Encoding: 8bit\r\nX-Folded: first\r\n\tsecond\r\n"
                           ) + body.encode("utf-8")
        self.deliver("bytes", raw)
        uid = self.wait_for_uid("bytes", "bytes-1@outside.example")
        m = self.imap("bytes")
        m.select("INBOX")
        fetched = self.fetch(m, uid, "BODY.PEEK[]")
        names, rest = split_trace(fetched)
        self.assertEqual(rest, raw, "after the trace fields %s the fetched message differs from the one sent"
                         % names)
        # What the server prepends: its own Received (SMTP), then Return-Path
        # and Delivered-To from the local delivery; nothing else.
        self.assertEqual({n.lower() for n in names}, set(TRACE_FIELDS), names)
        typ, data = m.uid("FETCH", str(uid), "(RFC822.SIZE)")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"RFC822.SIZE %d" % len(fetched), data[0])
        self.assertEqual(self.fetch(m, uid, "BODY.PEEK[TEXT]"), body.encode("utf-8"))
        header = self.fetch(m, uid, "BODY.PEEK[HEADER]")
        self.assertEqual(header + body.encode("utf-8"), fetched)
        self.assertEqual(self.fetch(m, uid, "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"), b"Subject: bytes check\r\n\r\n")
        # Fetching BODY[] (not PEEK) sets \Seen (RFC 3501 §6.4.5).
        m.uid("FETCH", str(uid), "(BODY[])")
        typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])

    # -- curl ------------------------------------------------------------------
    def curl(self, url, *args, tls=False):
        need("curl")
        port = int(url.split(":")[2].split("/")[0])
        cmd = ["curl", "-sS", "--max-time", "30", "-u", "%s:%s" % (address("curl"), password("curl"))]
        if tls:
            cmd += ["--cacert", self.cert, "--resolve", "%s:%d:127.0.0.1" % (SERVER_NAME, port)]
        p = run(cmd + list(args) + [url])
        self.assertEqual(p.returncode, 0, "curl %s %s\n%s" % (" ".join(args), url, transcript(p)))
        return p.stdout

    def test_curl_list_fetch_append(self):
        need("curl")
        raw = make_message("curl delivered", "delivered body\r\n", "curl-1@outside.example")
        self.deliver("curl", raw)
        uid = self.wait_for_uid("curl", "curl-1@outside.example")
        plain = "imap://127.0.0.1:%d" % self.d.port("imap")
        imaps = "imaps://%s:%d" % (SERVER_NAME, self.d.port("imaps"))
        starttls = "imap://%s:%d" % (SERVER_NAME, self.d.port("imap-strict"))
        for base, extra, tls in ((plain, [], False), (imaps, [], True), (starttls, ["--ssl-reqd"], True)):
            with self.subTest(base=base):
                listing = self.curl(base + "/", *extra, tls=tls).decode()
                self.assertRegex(listing, r'(?m)^\* LIST \([^)]*\) "[^"]*" "?INBOX"?\r?$', listing)
                fetched = self.curl("%s/INBOX;UID=%d" % (base, uid), *extra, tls=tls)
                names, rest = split_trace(fetched)
                self.assertEqual(rest, raw, "curl FETCH of UID %d via %s" % (uid, base))
                flags = self.curl(base + "/INBOX", "-X", "FETCH 1:* (FLAGS RFC822.SIZE)", *extra, tls=tls).decode()
                self.assertRegex(flags, r"\* \d+ FETCH \(", flags)
                self.assertIn("RFC822.SIZE %d" % len(fetched), flags)
                # APPEND (-T uploads to the mailbox URL).
                msgid = "curl-append-%d@client.example" % tls
                path = os.path.join(self.workdir("curl"), "append.eml")
                appended = make_message("curl appended", "uploaded by curl\r\n", msgid)
                with open(path, "wb") as f:
                    f.write(appended)
                self.curl(base + "/INBOX", "-T", path, *extra, tls=tls)
                auid = self.wait_for_uid("curl", msgid, timeout=5)
                m = self.imap("curl")
                m.select("INBOX")
                self.assertEqual(self.fetch(m, auid, "BODY.PEEK[]"), appended, "APPEND stores the exact octets")
                if base == starttls and not REFERENCE:
                    # The strict listener refuses the password without TLS.
                    p = run(["curl", "-sS", "--max-time", "30", "-u", "%s:%s" % (address("curl"), password("curl")),
                             "imap://127.0.0.1:%d/" % self.d.port("imap-strict")])
                    self.assertNotEqual(p.returncode, 0, "curl logged in without TLS on imap-strict:\n" + transcript(p))

    # -- mbsync ------------------------------------------------------------------
    def test_mbsync_two_way(self):
        mbsync = need("mbsync")
        w = self.workdir("mbsync")
        local = os.path.join(w, "mail")
        os.makedirs(local)
        sent = {}
        for i in range(3):
            msgid = "mbsync-%d@outside.example" % i
            sent[msgid] = make_message("mbsync %d" % i, "body %d\r\n" % i, msgid)
            self.deliver("mbsync", sent[msgid])
        for msgid in sent:
            self.wait_for_uid("mbsync", msgid)
        rc = os.path.join(w, "mbsyncrc")
        with open(rc, "w") as f:
            f.write("""IMAPAccount postern
Host 127.0.0.1
Port {port}
User {user}
Pass {password}
SSLType None
AuthMechs LOGIN

IMAPStore postern-remote
Account postern

MaildirStore postern-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel postern
Far :postern-remote:
Near :postern-local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
Sync All
""".format(port=self.d.port("imap"), user=address("mbsync"), password=password("mbsync"),
                local=local))

        def sync():
            p = run([mbsync, "-c", rc, "-a"], timeout=60)
            self.assertEqual(p.returncode, 0, "mbsync -a\n" + transcript(p))

        # 1. Pull: the three messages arrive with their bytes (after the trace fields).
        sync()
        files = maildir_files(os.path.join(local, "INBOX"))
        self.assertEqual(len(files), 3, files.keys())
        got = {}
        for path, data in files.items():
            msgid = email.message_from_bytes(data)["Message-ID"].strip("<>")
            got[msgid] = path
            self.assertEqual(split_trace(from_maildir(data))[1], sent[msgid])
        # 2. Local changes: a new message, \Flagged + \Seen on one, \Deleted (expunged) on another.
        new_id = "mbsync-local@client.example"
        new_raw = make_message("written locally", "from the Maildir\r\n", new_id)
        with open(os.path.join(local, "INBOX", "new", "%d.local.host" % time.time()), "wb") as f:
            f.write(new_raw)
        flagged = got["mbsync-0@outside.example"]
        os.rename(flagged, flagged.split(":2,")[0] + ":2,FS")
        trashed = got["mbsync-1@outside.example"]
        os.rename(trashed, trashed.split(":2,")[0] + ":2,T")
        sync()
        flags = self.flags_by_msgid("mbsync")
        self.assertIn(new_id, flags, "the local message was not uploaded: %s" % flags)
        self.assertLessEqual({"\\Flagged", "\\Seen"}, flags["mbsync-0@outside.example"])
        self.assertNotIn("mbsync-1@outside.example", flags, "the trashed message was not expunged: %s" % flags)
        m = self.imap("mbsync")
        m.select("INBOX")
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<%s>" % new_id)
        uploaded = self.fetch(m, int(data[0].split()[-1]), "BODY.PEEK[]")
        # mbsync adds its X-TUID header to find the upload again; the rest is intact.
        self.assertEqual(from_maildir(uploaded), new_raw)
        # 3. Server-side changes come back: \Answered on message 2, a new delivery.
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<mbsync-2@outside.example>")
        m.uid("STORE", data[0].split()[-1].decode(), "+FLAGS", "(\\Answered)")
        later = make_message("mbsync later", "later\r\n", "mbsync-later@outside.example")
        self.deliver("mbsync", later)
        self.wait_for_uid("mbsync", "mbsync-later@outside.example")
        sync()
        files = maildir_files(os.path.join(local, "INBOX"))
        by_id = {email.message_from_bytes(d)["Message-ID"].strip("<>"): p for p, d in files.items()}
        self.assertEqual(set(by_id), {"mbsync-0@outside.example", "mbsync-2@outside.example", new_id,
                                      "mbsync-later@outside.example"})
        self.assertIn("R", maildir_flags(by_id["mbsync-2@outside.example"]))
        self.assertEqual(split_trace(from_maildir(files[by_id["mbsync-later@outside.example"]]))[1], later)

    # -- offlineimap3 --------------------------------------------------------------
    def test_offlineimap_two_way(self):
        offlineimap = need("offlineimap")
        w = self.workdir("offlineimap")
        local = os.path.join(w, "mail")
        sent = {}
        for i in range(3):
            msgid = "oi-%d@outside.example" % i
            sent[msgid] = make_message("offlineimap %d" % i, "body %d\r\n" % i, msgid)
            self.deliver("offlineimap", sent[msgid])
        for msgid in sent:
            self.wait_for_uid("offlineimap", msgid)
        rc = os.path.join(w, "offlineimaprc")
        with open(rc, "w") as f:
            f.write("""[general]
accounts = postern
metadata = {w}/meta

[Account postern]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {port}
remoteuser = {user}
remotepass = {password}
ssl = no
starttls = no
folderfilter = lambda folder: folder == 'INBOX'
""".format(w=w, local=local, port=self.d.port("imap"), user=address("offlineimap"),
                password=password("offlineimap")))

        def sync():
            p = run([offlineimap, "-c", rc, "-o", "-u", "basic"], timeout=120)
            out = transcript(p)
            self.assertEqual(p.returncode, 0, "offlineimap\n" + out)
            self.assertNotIn("ERROR", out, "offlineimap\n" + out)

        sync()
        files = maildir_files(os.path.join(local, "INBOX"))
        self.assertEqual(len(files), 3, files.keys())
        got = {}
        for path, data in files.items():
            msgid = email.message_from_bytes(data)["Message-ID"].strip("<>")
            got[msgid] = path
            self.assertEqual(split_trace(from_maildir(data))[1], sent[msgid])
        new_id = "oi-local@client.example"
        new_raw = make_message("offlineimap local", "from the Maildir\r\n", new_id).replace(b"\r\n", b"\n")
        with open(os.path.join(local, "INBOX", "new", "%d_0.%d.host" % (time.time(), os.getpid())), "wb") as f:
            f.write(new_raw)
        flagged = got["oi-0@outside.example"]
        os.rename(flagged, flagged.split(":2,")[0] + ":2,FS")
        sync()
        flags = self.flags_by_msgid("offlineimap")
        self.assertIn(new_id, flags, "the local message was not uploaded: %s" % flags)
        self.assertLessEqual({"\\Flagged", "\\Seen"}, flags["oi-0@outside.example"])
        # Server side: \Answered on message 1 reaches the Maildir.
        m = self.imap("offlineimap")
        m.select("INBOX")
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", "<oi-1@outside.example>")
        m.uid("STORE", data[0].split()[-1].decode(), "+FLAGS", "(\\Answered)")
        sync()
        files = maildir_files(os.path.join(local, "INBOX"))
        by_id = {email.message_from_bytes(d)["Message-ID"].strip("<>"): p for p, d in files.items()}
        self.assertEqual(len(files), 4, files.keys())
        self.assertIn("R", maildir_flags(by_id["oi-1@outside.example"]))

    # -- mutt under tmux ---------------------------------------------------------
    def test_mutt_shows_subjects(self):
        self.mutt_session(need("mutt"), "mutt")

    def test_neomutt_shows_subjects(self):
        self.mutt_session(need("neomutt"), "neomutt")

    def mutt_session(self, mutt, group):
        """Runs mutt or neomutt under tmux on the group's INBOX (STARTTLS): the
        index shows the three subjects, Enter shows the first body."""
        need("tmux")
        subjects = ["Mutt subject alpha", "Mutt subject bravo", "Mutt subject charlie"]
        for i, s in enumerate(subjects):
            msgid = "%s-%d@outside.example" % (group, i)
            self.deliver(group, make_message(s, "mutt body %d\r\n" % i, msgid))
            self.wait_for_uid(group, msgid)
        w = self.workdir(group)
        sock = os.path.join(w, "tmux.sock")
        os.makedirs(os.path.join(w, "Mail"), exist_ok=True)  # else mutt asks to create $folder
        muttrc = os.path.join(w, "muttrc")
        with open(muttrc, "w") as f:
            # STARTTLS, trusting exactly the server's certificate; its name is
            # mx.example.test, mutt connects to 127.0.0.1.
            f.write('set ssl_starttls=yes\nset ssl_force_tls=yes\nset certificate_file="%s"\n'
                    'set ssl_verify_host=no\nset imap_user="%s"\nset imap_pass="%s"\nset header_cache=""\n'
                    'set message_cachedir=""\nset sort=date\nset mail_check=5\n'
                    % (self.cert, address(group), password(group)))
        url = "imap://127.0.0.1:%d/INBOX" % self.d.port("imap")
        env = dict(os.environ, TERM="xterm", HOME=w)
        p = run(["tmux", "-S", sock, "new-session", "-d", "-x", "160", "-y", "40", "-s", group,
                 "%s -n -F %s -f %s" % (mutt, muttrc, url)], env=env)
        self.assertEqual(p.returncode, 0, transcript(p))
        self.addCleanup(self.stop_tmux, sock)

        def screen():
            return run(["tmux", "-S", sock, "capture-pane", "-p", "-t", group]).stdout.decode("utf-8", "replace")

        end = time.monotonic() + 20
        text = ""
        while time.monotonic() < end:
            text = screen()
            if all(s in text for s in subjects):
                break
            time.sleep(0.3)
        for s in subjects:
            self.assertIn(s, text, "%s's index does not show %r; screen:\n%s" % (group, s, text))
        # Open the first message: its body is shown.
        run(["tmux", "-S", sock, "send-keys", "-t", group, "Enter"])
        end = time.monotonic() + 10
        while time.monotonic() < end and "mutt body" not in text:
            time.sleep(0.3)
            text = screen()
        self.assertRegex(text, r"mutt body \d", "the pager does not show the body; screen:\n%s" % text)

    @staticmethod
    def stop_tmux(sock):
        # The tmux server we started is the one on our private socket; its pid is
        # asked from it and it is ended by that pid.
        p = subprocess.run(["tmux", "-S", sock, "display-message", "-p", "#{pid}"], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.strip().isdigit():
            pid = int(p.stdout.strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)

    # -- imaplib -------------------------------------------------------------------
    def test_imaplib_starttls_and_implicit_tls(self):
        m = imaplib.IMAP4("127.0.0.1", self.d.port("imap"), timeout=20)
        self.addCleanup(self.close_imap, m)
        self.assertIn("STARTTLS", m.capabilities)
        typ, data = m.starttls(ssl_context=self.tls_context())
        self.assertEqual(typ, "OK", data)
        self.assertNotIn("STARTTLS", m.capabilities, "STARTTLS still offered after TLS (RFC 3501 §6.2.1)")
        typ, data = m.login(address("imaplib"), password("imaplib"))
        self.assertEqual(typ, "OK", data)
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK", data)

        s = imaplib.IMAP4_SSL("127.0.0.1", self.d.port("imaps"), ssl_context=self.tls_context(), timeout=20)
        self.addCleanup(self.close_imap, s)
        self.assertNotIn("STARTTLS", s.capabilities)
        self.assertNotIn("LOGINDISABLED", s.capabilities)
        typ, data = s.login(address("imaplib"), password("imaplib"))
        self.assertEqual(typ, "OK", data)
        typ, data = s.list()
        self.assertEqual(typ, "OK", data)
        self.assertTrue(any(b"INBOX" in line for line in data), data)

    def test_imaplib_login_refused_before_tls_without_cleartext_auth(self):
        if REFERENCE:
            self.skipTest("Dovecot refuses cleartext LOGIN on all ports or none")
        m = imaplib.IMAP4("127.0.0.1", self.d.port("imap-strict"), timeout=20)
        self.addCleanup(self.close_imap, m)
        self.assertIn("LOGINDISABLED", m.capabilities)
        self.assertIn("STARTTLS", m.capabilities)
        self.assertNotIn("AUTH=PLAIN", m.capabilities, "a password mechanism offered before TLS")
        # RFC 3501 §6.2.3: LOGIN while LOGINDISABLED is advertised gets NO.
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            m.login(address("imaplib"), password("imaplib"))
        self.assertNotIn("authenticated", str(cm.exception).lower())
        # Wrong password after TLS: NO, and the session survives to try again.
        m.starttls(ssl_context=self.tls_context())
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        with self.assertRaises(imaplib.IMAP4.error):
            m.login(address("imaplib"), "wrong")
        typ, data = m.login(address("imaplib"), password("imaplib"))
        self.assertEqual(typ, "OK", data)
        # The cleartext listener takes the same LOGIN without TLS.
        self.imap("imaplib", "imap")

    def test_imaplib_idle_sees_new_delivery(self):
        self.deliver("idle", make_message("idle first", "first\r\n", "idle-0@outside.example"))
        self.wait_for_uid("idle", "idle-0@outside.example")
        m = self.imap("idle")
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK", data)
        before = int(data[0])
        self.assertIn("IDLE", m.capabilities)
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        m.sock.settimeout(20)
        line = m.readline()
        self.assertTrue(line.startswith(b"+"), "IDLE was not accepted: %r" % line)
        self.deliver("idle", make_message("idle second", "second\r\n", "idle-1@outside.example"))
        seen = []
        while True:
            try:
                line = m.readline()
            except socket.timeout:
                self.fail("no EXISTS within 20 s of the delivery while idling; got %r; log:\n%s"
                          % (seen, self.d.log()[-3000:]))
            self.assertTrue(line, "connection closed while idling; got %r" % seen)
            seen.append(line)
            match = re.match(rb"\* (\d+) EXISTS", line)
            if match:
                self.assertEqual(int(match.group(1)), before + 1, seen)
                break
        m.send(b"DONE\r\n")
        while True:
            line = m.readline()
            self.assertTrue(line, "connection closed after DONE; got %r" % seen)
            seen.append(line)
            if line.startswith(tag + b" "):
                self.assertTrue(line.startswith(tag + b" OK"), seen)
                break
        typ, data = m.fetch(str(before + 1), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"idle second", data[0][1])

    def test_imaplib_two_sessions_see_flags_and_expunge(self):
        for i in range(3):
            self.deliver("shared", make_message("shared %d" % i, "b%d\r\n" % i, "shared-%d@outside.example" % i))
        for i in range(3):
            self.wait_for_uid("shared", "shared-%d@outside.example" % i)
        a = self.imap("shared")
        b = self.imap("shared")
        typ, data = a.select("INBOX")
        count = int(data[0])
        b.select("INBOX")
        self.assertEqual(count, 3)

        def subjects(m):
            typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertEqual(typ, "OK", data)
            return [part[1].strip() for part in data if isinstance(part, tuple)]

        # The queue may deliver the three in any order: note which is where.
        before = subjects(b)
        self.assertEqual(sorted(before), [b"Subject: shared %d" % i for i in range(3)])
        # A flags message 1: B's next command reports it (RFC 3501 §7.4.2 unsolicited FETCH).
        typ, data = a.store("1", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "OK", data)
        typ, data = b.noop()
        self.assertEqual(typ, "OK", data)
        fetches = b.untagged_responses.pop("FETCH", [])
        self.assertTrue(any(re.match(rb"1 \(.*FLAGS \([^)]*\\Flagged", f or b"") for f in fetches),
                        "B was not told of the flag change: %r" % fetches)
        # A expunges message 2: B hears "* 2 EXPUNGE" and sees two messages.
        a.store("2", "+FLAGS", "(\\Deleted)")
        typ, data = a.expunge()
        self.assertEqual(typ, "OK", data)
        self.assertEqual(data, [b"2"])
        typ, data = b.noop()
        self.assertEqual(typ, "OK", data)
        self.assertEqual(b.untagged_responses.pop("EXPUNGE", []), [b"2"])
        self.assertEqual(subjects(b), [before[0], before[2]])
        # And the other way round: B's flag change reaches A.
        b.store("2", "+FLAGS", "(\\Answered)")
        a.noop()
        fetches = a.untagged_responses.pop("FETCH", [])
        self.assertTrue(any(re.match(rb"2 \(.*FLAGS \([^)]*\\Answered", f or b"") for f in fetches), fetches)


if __name__ == "__main__":
    unittest.main()
