"""Issue 12 §2: IMAP BODYSTRUCTURE and ENVELOPE must match Dovecot's.

The same corpus (tests/data/mime-corpus and the mail library's samples,
sdk/lib/test/data) is APPENDed with imaplib to posternd's imap plugin and to a
private Dovecot on loopback (the DovecotReference of test_imap_clients.py);
then BODYSTRUCTURE and ENVELOPE are FETCHed from both and compared message by
message, as parsed IMAP data (a quoted string and a literal with the same
octets are the same string). The test prints how many messages were compared,
how many are identical and how many differ in a way listed in ALLOWED below,
each with its reason; any other difference fails the test and is printed.

Dovecot is a test dependency (scripts/deps.sh installs dovecot-imapd); the
test skips, saying so, only when the dovecot binary is absent.
"""

import difflib
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN_DIR, SOURCE_DIR, Daemon  # noqa: E402
from test_imap_clients import DovecotReference, address, password  # noqa: E402

GROUP = "bytes"  # one of test_imap_clients.ACCOUNTS; DovecotReference creates them all
CORPUS_DIRS = [os.path.join(SOURCE_DIR, "tests", "data", "mime-corpus"),
               os.path.join(SOURCE_DIR, "sdk", "lib", "test", "data")]
NOT_MESSAGES = {".gitattributes", "README.md", "LICENSE.txt", "COPYRIGHT.txt"}

# Known differences from Dovecot 2.3: (corpus file relative to its corpus dir,
# FETCH item) -> reason. Each one is a choice made on purpose (all of them were
# in the IMAP plugin's output before it moved onto the mail library); nothing
# else may differ.
FOLD = ("a folded field: we unfold as RFC 5322 §2.2.3 says (only the CRLF goes, the whitespace "
        "after it stays); Dovecot turns the fold into one space")
FIRST = ("a field that RFC 5322 §3.6 allows once occurs twice: we take the first, as every header "
         "lookup in Postern does; Dovecot the last")
INVALID_TYPE = ("a Content-Type that is not type/subtype: we send text/plain; charset=us-ascii "
                "(RFC 2045 §5.2); Dovecot sends the invalid value as written ('' '' or 'garbage' '')")
RFC2231 = ("RFC 2231 parameters: we send one value per parameter, continuations joined and ASCII values "
           "decoded (a gap in the numbers ends the value, §3); Dovecot sends the extended form as written, "
           "after the plain parameters, keeps a plain duplicate and adds charset us-ascii beside charset*")
ALLOWED = {
    ("dkim-perl/good_ietf00_1.txt", "ENVELOPE"): FIRST + " (Date); and " + FOLD,
    ("dkim-perl/good_ietf00_2.txt", "ENVELOPE"): FIRST + " (Date); and " + FOLD,
    ("dkim-perl/good_ietf00_3.txt", "ENVELOPE"): FIRST + " (Date); and " + FOLD,
    ("hostile/duplicate_fields.eml", "ENVELOPE"): FIRST + " (Subject)",
    ("spamassassin/dkim_test-pass-08.msg", "ENVELOPE"): FIRST + " (Subject, Message-ID prepended to a signed message)",
    ("spamassassin/nice_cjk_big5-base64.1", "ENVELOPE"): FIRST + " (Date)",
    ("spamassassin/spam_dmarc_noneko.eml", "ENVELOPE"): FIRST + " (Message-ID)",
    ("spamassassin/spam_dmarc_quarko.eml", "ENVELOPE"): FIRST + " (Message-ID)",
    ("spamassassin/spam_dmarc_rejectko.eml", "ENVELOPE"): FIRST + " (Message-ID)",
    ("hostile/folded_headers.eml", "ENVELOPE"): FOLD,
    ("spamassassin/nice.mbox", "ENVELOPE"): FOLD,
    ("spamassassin/nice_001", "ENVELOPE"): FOLD,
    ("spamassassin/nice_authres", "ENVELOPE"): FOLD,
    ("spamassassin/nice_unicode1", "ENVELOPE"): FOLD,
    ("spamassassin/nice_unicode2", "ENVELOPE"): FOLD,
    ("spamassassin/spam_004", "ENVELOPE"): FOLD,
    ("spamassassin/spam_006", "ENVELOPE"): FOLD,
    ("spamassassin/spam_007", "ENVELOPE"): FOLD,
    ("spamassassin/spam_unicode2", "ENVELOPE"): FOLD,
    ("hostile/nul_bytes.eml", "ENVELOPE"): ("a NUL in Subject: no IMAP string may hold one (RFC 3501 §4.3, CHAR8); "
                                            "we drop it, Dovecot sends U+FFFD"),
    ("hostile/addresses.eml", "ENVELOPE"): ("a quoted local part is sent as written (\"local part\"), Dovecot "
                                            "unquotes it; a Bcc of only ';,,' holds no address for us (NIL), one "
                                            "MISSING_MAILBOX entry for Dovecot"),
    ("hostile/invalid_content_type.eml", "BODYSTRUCTURE"): INVALID_TYPE + "; and a folded Content-Location loses "
                                                           "its whitespace (RFC 2557 §4.4.1), Dovecot keeps a space",
    ("spamassassin/spam_badctype1", "BODYSTRUCTURE"): INVALID_TYPE,
    ("spamassassin/nice_mime8", "BODYSTRUCTURE"): INVALID_TYPE,
    ("hostile/rfc2231.eml", "BODYSTRUCTURE"): RFC2231,
    ("rfc2231.eml", "BODYSTRUCTURE"): RFC2231,
    ("spamassassin/spam_003", "BODYSTRUCTURE"): ("Content-Transfer-Encoding: 8BIT in a message without "
                                                 "MIME-Version: we honour Content-* fields without it, as the "
                                                 "rest of Postern does; Dovecot reports the default 7bit"),
    ("spamassassin/spam_utf16.eml", "BODYSTRUCTURE"): ("an unquoted boundary=----=_NextPart... holds '=', a "
                                                       "tspecial (RFC 2045 §5.1): we read it up to the ';' as the "
                                                       "sender meant and find its parts; Dovecot cuts it at the '='"),
    ("hostile/deep_nesting.eml", "BODYSTRUCTURE"): ("past the nesting limit (ours 100 levels, Dovecot's one less) "
                                                    "the rest is one application/octet-stream part; ours reports "
                                                    "the octets of that body, Dovecot 0 and the boundary parameter"),
    ("hostile/deep_rfc822.eml", "BODYSTRUCTURE"): ("past the nesting limit (ours 100 levels, Dovecot's one less) "
                                                   "the rest is one application/octet-stream part"),
}


def corpus_files():
    out = []
    for base in CORPUS_DIRS:
        for root, _, files in os.walk(base):
            for name in files:
                if name not in NOT_MESSAGES:
                    path = os.path.join(root, name)
                    out.append((os.path.relpath(path, base), path))
    return sorted(out)


# -- IMAP data (RFC 3501 §4, §9) as Python values: lists, bytes, None, int ----

class Reader:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def skip_space(self):
        while self.i < len(self.d) and self.d[self.i:self.i + 1] == b" ":
            self.i += 1

    def value(self):
        self.skip_space()
        c = self.d[self.i:self.i + 1]
        if c == b"(":
            self.i += 1
            out = []
            while True:
                self.skip_space()
                if self.d[self.i:self.i + 1] == b")":
                    self.i += 1
                    return out
                if self.i >= len(self.d):
                    raise ValueError("unterminated list")
                out.append(self.value())
        if c == b'"':
            self.i += 1
            s = bytearray()
            while self.d[self.i:self.i + 1] != b'"':
                if self.i >= len(self.d):
                    raise ValueError("unterminated string")
                if self.d[self.i:self.i + 1] == b"\\":
                    self.i += 1
                s += self.d[self.i:self.i + 1]
                self.i += 1
            self.i += 1
            return bytes(s)
        if c == b"{":
            end = self.d.index(b"}", self.i)
            n = int(self.d[self.i + 1:end].rstrip(b"+"))
            start = end + 3  # "}\r\n"
            self.i = start + n
            return self.d[start:start + n]
        start = self.i
        while self.i < len(self.d) and self.d[self.i:self.i + 1] not in (b" ", b")", b"("):
            self.i += 1
        atom = self.d[start:self.i]
        if atom.upper() == b"NIL":
            return None
        if atom.isdigit():
            return int(atom)
        return atom


def fetch_items(conn, seq, items):
    """{ITEM NAME: value} of one FETCH response, literals included."""
    typ, data = conn.fetch(str(seq), "(%s)" % items)
    if typ != "OK":
        raise AssertionError("FETCH %s: %r" % (seq, data))
    raw = b""
    for part in data:
        if isinstance(part, tuple):
            raw += part[0] + b"\r\n" + part[1]
        elif part is not None:
            raw += part
    # "n FETCH (...)" as imaplib hands it over (the "* " is gone).
    r = Reader(raw)
    r.i = raw.index(b"(")
    lst = r.value()
    return {lst[k].upper().decode(): lst[k + 1] for k in range(0, len(lst) - 1, 2)}


def lower(v):
    return v.lower() if isinstance(v, bytes) else v


def normalize_params(params):
    if not isinstance(params, list):
        return params
    return [lower(x) if k % 2 == 0 else x for k, x in enumerate(params)]


def normalize_disposition(d):
    if isinstance(d, list) and len(d) == 2:
        return [lower(d[0]), normalize_params(d[1])]
    return d


def normalize_body(b):
    """A BODY/BODYSTRUCTURE with the case-insensitive atoms in lower case: media type and
    subtype, parameter names, the transfer encoding, the disposition type and its
    parameter names (RFC 3501 §7.4.2 compares them without case; Dovecot sends them as
    the message has them, we in upper case)."""
    if not isinstance(b, list) or not b:
        return b
    b = list(b)
    if isinstance(b[0], list):  # multipart: parts, subtype, [params, disposition, language, location]
        k = 0
        while k < len(b) and isinstance(b[k], list):
            b[k] = normalize_body(b[k])
            k += 1
        params, disposition = k + 1, k + 2
        if k < len(b):
            b[k] = lower(b[k])
    else:  # type, subtype, params, id, description, encoding, size, [...], md5, disposition, ...
        for k in (0, 1, 5):
            if k < len(b):
                b[k] = lower(b[k])
        params, disposition = 2, 8
        if b[0] == b"message" and b[1] in (b"rfc822", b"global") and len(b) > 9:
            b[8] = normalize_body(b[8])
            disposition = 11
        elif b[0] == b"text":
            disposition = 9
    if params < len(b):
        b[params] = normalize_params(b[params])
    if disposition < len(b):
        b[disposition] = normalize_disposition(b[disposition])
    return b


def show(v):
    """IMAP-like text of a parsed value, one string per line for diffs."""
    if v is None:
        return "NIL"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return repr(v)[1:]
    return "(" + " ".join(show(x) for x in v) + ")"


class DovecotStructureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("dovecot") and not os.path.exists("/usr/sbin/dovecot"):
            raise unittest.SkipTest("dovecot is not installed (Debian package: dovecot-imapd); "
                                    "BODYSTRUCTURE/ENVELOPE are not compared with it")
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
        cls.ref = DovecotReference()
        cls.addClassCleanup(cls.ref.stop)
        cls.d = Daemon(listeners=[{"name": "imap", "protocol": "imap", "cleartext-auth": "true"}],
                       plugins=[("imap", "")],
                       smtp_xml="<local-domain>example.test</local-domain>",
                       extra_xml='<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>')
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path, "user", "add",
                            address(GROUP), "--password-stdin"], input=(password(GROUP) + "\n").encode(),
                           capture_output=True)
        if p.returncode != 0:
            raise AssertionError("posternctl user add: %r %r" % (p.stdout, p.stderr))
        cls.d.start()
        cls.addClassCleanup(cls.d.stop)
        for port, log in ((cls.d.port("imap"), cls.d.log), (cls.ref.port("imap"), cls.ref.log)):
            end = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > end:
                        raise AssertionError("IMAP port %d never opened; log:\n%s" % (port, log()[-4000:]))
                    time.sleep(0.05)

    def login(self, port):
        m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        typ, data = m.login(address(GROUP), password(GROUP))
        self.assertEqual(typ, "OK", data)
        self.addCleanup(m.logout)
        return m

    def test_bodystructure_and_envelope_match_dovecot(self):
        files = corpus_files()
        self.assertGreater(len(files), 300, "the corpus is missing")
        servers = {"postern": self.login(self.d.port("imap")), "dovecot": self.login(self.ref.port("imap"))}
        seq = {}  # corpus index -> {server: sequence number}
        count = {name: 0 for name in servers}
        refused = []  # by one server only
        refused_by_both = []
        for index, (name, path) in enumerate(files):
            with open(path, "rb") as f:
                raw = f.read()
            got = {}
            for server, conn in servers.items():
                try:
                    typ, data = conn.append("INBOX", None, None, raw)
                except imaplib.IMAP4.error as e:
                    typ, data = "NO", [str(e).encode()]
                if typ == "OK":
                    count[server] += 1
                    got[server] = count[server]
                else:
                    got[server] = None
                    refused.append("%s: %s refused the APPEND: %r" % (name, server, data))
            seq[index] = got
            if set(got.values()) == {None}:
                refused.pop()
                refused.pop()
                refused_by_both.append(name)
        for conn in servers.values():
            typ, data = conn.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK", data)

        compared = identical = 0
        allowed = []
        failures = []
        for index, (name, _) in enumerate(files):
            if None in seq[index].values():
                continue
            items = {server: fetch_items(conn, seq[index][server], "BODYSTRUCTURE ENVELOPE")
                     for server, conn in servers.items()}
            compared += 1
            same = True
            for item in ("BODYSTRUCTURE", "ENVELOPE"):
                ours, theirs = items["postern"].get(item), items["dovecot"].get(item)
                if item == "BODYSTRUCTURE":
                    ours, theirs = normalize_body(ours), normalize_body(theirs)
                if ours == theirs:
                    continue
                same = False
                if (name, item) in ALLOWED:
                    allowed.append("%s %s: %s" % (name, item, ALLOWED[(name, item)]))
                    continue
                diff = "\n".join(difflib.unified_diff([show(theirs)], [show(ours)], "dovecot", "postern",
                                                      lineterm=""))
                failures.append("%s %s differs:\n%s" % (name, item, diff))
            if same:
                identical += 1

        stale = sorted("%s %s" % k for k in ALLOWED if not any(a.startswith("%s %s:" % k) for a in allowed))
        print("\nBODYSTRUCTURE/ENVELOPE against Dovecot: %d messages compared, %d identical, %d allow-listed "
              "differences, %d other differences; %d APPENDs refused by one server, %d by both (%s)" %
              (compared, identical, len(allowed), len(failures), len(refused), len(refused_by_both),
               ", ".join(refused_by_both)), file=sys.stderr)
        for line in refused + allowed:
            print("  " + line, file=sys.stderr)
        for f in failures:
            print(f, file=sys.stderr)
        self.assertEqual(refused, [], "a corpus message must be accepted or refused by both servers alike")
        self.assertEqual(stale, [], "allow-list entries that no longer differ: remove them")
        self.assertEqual(failures, [], "%d differences from Dovecot (printed above)" % len(failures))
        self.assertGreater(compared, 300)


if __name__ == "__main__":
    unittest.main()
