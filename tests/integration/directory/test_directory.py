"""The directory (D1-D3) end to end: posternctl builds domains, accounts,
aliases, a catch-all, a list and a forward; the real posternd answers RCPT
and AUTH from them and picks up posternctl's changes while it runs."""

import json
import os
import smtplib
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon, hash_password  # noqa: E402

STATIC_PASSWORD = "static horse"
SMTP_XML = """
  <local-domain>example.test</local-domain>
  <account user="legacy@example.test" password-hash="%s"/>
""" % hash_password(STATIC_PASSWORD)
SMTP_ATTRS = {"tarpit-delay": "0", "auth-failure-delay": "10ms", "min-free-disk": "0"}
# Cheap argon2 for the test; production uses the defaults (docs/directory.md).
DIRECTORY_XML = '<directory hash-time="1" hash-memory="1M"/>'


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class DirectoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, extra_xml=DIRECTORY_XML)
        # posternctl works before the daemon ever ran: it reads the same manifest.
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        cls.build_directory()
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    @classmethod
    def ctl(cls, *args, stdin=None):
        p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    @classmethod
    def must(cls, *args, stdin=None):
        rc, out, err = cls.ctl(*args, stdin=stdin)
        if rc != 0:
            raise AssertionError("posternctl %s -> %d: %s" % (" ".join(args), rc, err))
        return out

    @classmethod
    def build_directory(cls):
        cls.must("domain", "add", "other.test")
        cls.must("domain", "add", "bare.test")  # nothing in it: postmaster only (RFC 5321 §4.5.1)
        cls.must("domain", "add", "alias.test", "--alias-of", "example.test")
        cls.must("user", "add", "alice@example.test", "--password-stdin", "--name", "Alice A", "--quota", "10M",
                 stdin="alice-pw\n")
        cls.must("user", "add", "bob@example.test", "--password-stdin", stdin="bob-pw\n")
        cls.must("user", "disable", "bob@example.test")
        cls.must("user", "add", "carol@example.test", "--password-stdin", stdin="carol-pw\n")
        cls.must("user", "forward", "carol@example.test", "carol@home.example", "--keep-copy")
        cls.must("alias", "add", "sales@example.test", "alice@example.test", "carol@example.test")
        cls.must("alias", "add", "*@other.test", "alice@example.test")
        cls.must("list", "add", "staff@example.test", "--policy", "members")
        cls.must("list", "members", "staff@example.test", "add", "alice@example.test", "carol@example.test")
        cls.must("router", "add", "*@old.test = *@example.test")

    # -- posternctl ------------------------------------------------------
    def test_exit_codes(self):
        self.assertEqual(self.ctl("domain", "add", "example.test")[0], 4)  # the default domain exists
        self.assertEqual(self.ctl("user", "add", "alice@example.test")[0], 4)
        self.assertEqual(self.ctl("alias", "add", "alice@example.test", "bob@example.test")[0], 4)
        self.assertEqual(self.ctl("user", "add", "x@unknown.test")[0], 3)
        self.assertEqual(self.ctl("user", "show", "ghost@example.test")[0], 3)
        self.assertEqual(self.ctl("user", "passwd", "ghost@example.test", stdin="pw\n")[0], 3)
        self.assertEqual(self.ctl("domain", "del", "nowhere.test")[0], 3)
        self.assertEqual(self.ctl("list", "members", "nolist@example.test")[0], 3)
        rc, _, err = self.ctl("user", "add", "not an address")
        self.assertEqual(rc, 2)
        self.assertIn("not a valid address", err)
        self.assertEqual(self.ctl("domain", "add", "bad..domain")[0], 2)
        self.assertEqual(self.ctl("user")[0], 2)
        self.assertEqual(self.ctl("user", "frobnicate", "a@example.test")[0], 2)
        self.assertEqual(self.ctl("user", "add", "a@example.test", "--bogus")[0], 2)
        self.assertEqual(self.ctl("router", "add", "no rule here")[0], 2)
        self.assertEqual(self.ctl("list", "add", "l2@example.test", "--policy", "everyone")[0], 2)
        rc, _, err = self.ctl("domain", "del", "other.test")
        self.assertEqual(rc, 1)  # still has the catch-all
        self.assertIn("--force", err)

    def test_json_output(self):
        domains = json.loads(self.must("domain", "list", "--json"))
        by_name = {d["name"]: d for d in domains}
        self.assertEqual(by_name["example.test"]["kind"], "local")
        self.assertTrue(by_name["example.test"]["default"])
        self.assertEqual(by_name["alias.test"]["alias_of"], "example.test")
        users = json.loads(self.must("user", "list", "example.test", "--json"))
        addresses = [u["address"] for u in users]
        self.assertIn("postmaster@example.test", addresses)  # exists from the first start
        alice = json.loads(self.must("user", "show", "Alice@Example.Test", "--json"))
        self.assertEqual(alice["real_name"], "Alice A")
        self.assertEqual(alice["quota"], 10 * 1024 * 1024)
        self.assertTrue(alice["has_password"])
        self.assertEqual(alice["services"], ["smtp", "imap", "pop3"])
        postmaster = json.loads(self.must("user", "show", "postmaster@example.test", "--json"))
        self.assertFalse(postmaster["has_password"])
        carol = json.loads(self.must("user", "show", "carol@example.test", "--json"))
        self.assertEqual(carol["forward"], ["carol@home.example"])
        self.assertTrue(carol["keep_copy"])
        aliases = {a["address"]: a for a in json.loads(self.must("alias", "list", "--json"))}
        self.assertTrue(aliases["*@other.test"]["catch_all"])
        self.assertEqual(aliases["sales@example.test"]["targets"], ["alice@example.test", "carol@example.test"])
        lst = json.loads(self.must("list", "show", "staff@example.test", "--json"))
        self.assertEqual(lst["policy"], "members")
        self.assertEqual(lst["members"], ["alice@example.test", "carol@example.test"])
        test = json.loads(self.must("router", "test", "sales@old.test", "--json"))
        self.assertEqual(test["routed"], "sales@example.test")
        self.assertEqual(test["status"], "ok")
        self.assertEqual(sorted(t["address"] for t in test["targets"]),
                         ["alice@example.test", "carol@example.test", "carol@home.example"])
        rules = json.loads(self.must("router", "show", "--json"))
        self.assertEqual(rules, [{"position": 1, "rule": "*@old.test = *@example.test", "valid": True}])
        # No command ever prints a hash.
        for args in (("user", "list", "--json"), ("user", "show", "alice@example.test"), ("user", "list")):
            self.assertNotIn("argon2", self.must(*args))

    # -- RCPT ------------------------------------------------------------
    def rcpt(self, rcpt, sender="someone@outside.example"):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=10) as s:
            s.ehlo("client.example")
            code, _ = s.mail(sender)
            self.assertEqual(code, 250)
            return s.rcpt(rcpt)

    def test_rcpt_checks(self):
        code, msg = self.rcpt("nobody@example.test")
        self.assertEqual(code, 550)
        self.assertTrue(msg.startswith(b"5.1.1"), msg)
        code, msg = self.rcpt("bob@example.test")
        self.assertEqual(code, 550)
        self.assertTrue(msg.startswith(b"5.2.1"), msg)
        self.assertEqual(self.rcpt("alice@example.test")[0], 250)
        self.assertEqual(self.rcpt("ALICE@alias.test")[0], 250)
        self.assertEqual(self.rcpt("sales@example.test")[0], 250)
        self.assertEqual(self.rcpt("anything@other.test")[0], 250)  # catch-all
        self.assertEqual(self.rcpt("postmaster@example.test")[0], 250)
        # RFC 5321 §4.5.1: every served domain takes mail for its postmaster.
        self.assertEqual(self.rcpt("postmaster@bare.test")[0], 250)
        self.assertEqual(self.rcpt("PostMaster@bare.test")[0], 250)
        self.assertEqual(self.rcpt("someone@bare.test")[0], 550)

    def test_list_posting_policy(self):
        code, msg = self.rcpt("staff@example.test", sender="stranger@outside.example")
        self.assertEqual(code, 550)
        self.assertTrue(msg.startswith(b"5.7.1"), msg)
        self.assertIn(b"only members", msg)
        self.assertEqual(self.rcpt("staff@example.test", sender="alice@example.test")[0], 250)

    # -- AUTH ------------------------------------------------------------
    def login(self, user, password, mechanism="PLAIN"):
        with smtplib.SMTP("127.0.0.1", self.d.port("submission"), timeout=10) as s:
            s.starttls(context=tls_context())
            s.ehlo("client.example")
            try:
                if mechanism == "PLAIN":
                    s.user, s.password = user, password
                    code, _ = s.auth("PLAIN", s.auth_plain)
                else:
                    s.user, s.password = user, password
                    code, _ = s.auth("LOGIN", s.auth_login)
            except smtplib.SMTPAuthenticationError as e:
                return e.smtp_code
            return code

    def test_auth_plain_and_login(self):
        self.assertEqual(self.login("alice@example.test", "alice-pw"), 235)
        self.assertEqual(self.login("alice%example.test", "alice-pw", "LOGIN"), 235)
        self.assertEqual(self.login("alice@example.test", "wrong"), 535)
        self.assertEqual(self.login("bob@example.test", "bob-pw"), 535)  # disabled
        self.assertEqual(self.login("postmaster@example.test", ""), 535)  # no password yet
        self.assertEqual(self.login("legacy@example.test", STATIC_PASSWORD), 235)  # manifest <account>

    def test_submission_sender_ownership(self):
        with smtplib.SMTP("127.0.0.1", self.d.port("submission"), timeout=10) as s:
            s.starttls(context=tls_context())
            s.login("alice@example.test", "alice-pw")
            self.assertEqual(s.mail("alice@example.test")[0], 250)
            s.rset()
            self.assertEqual(s.mail("carol@example.test")[0], 553)

    def test_changes_while_running(self):
        self.must("user", "add", "dave@example.test", "--password-stdin", stdin="dave-1\n")
        self.must("user", "passwd", "dave@example.test", stdin="dave-2\n")
        deadline = time.monotonic() + 3
        while self.login("dave@example.test", "dave-2") != 235:
            self.assertLess(time.monotonic(), deadline, "new password not effective within 3 s\n" + self.d.log())
            time.sleep(0.2)
        self.assertEqual(self.login("dave@example.test", "dave-1"), 535)
        self.assertEqual(self.rcpt("dave@example.test")[0], 250)
        self.must("user", "disable", "dave@example.test")
        deadline = time.monotonic() + 3
        while self.rcpt("dave@example.test")[0] != 550:
            self.assertLess(time.monotonic(), deadline, "disable not effective within 3 s")
            time.sleep(0.2)
        self.must("user", "del", "dave@example.test")
        deadline = time.monotonic() + 3
        while not self.rcpt("dave@example.test")[1].startswith(b"5.1.1"):
            self.assertLess(time.monotonic(), deadline, "delete not effective within 3 s")
            time.sleep(0.2)

    def test_log_never_holds_passwords(self):
        self.login("alice@example.test", "alice-pw")
        log = self.d.log()
        self.assertIn("directory: file=", log)
        for secret in ("alice-pw", "bob-pw", "carol-pw", "argon2"):
            self.assertNotIn(secret, log)


class NoDirectoryTest(unittest.TestCase):
    def test_posternctl_says_the_directory_is_off(self):
        d = Daemon(smtp_xml="<local-domain>example.test</local-domain>")
        try:
            with open(d.config_path, "w") as f:
                f.write(d.manifest())
            p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", d.config_path, "user", "list"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn("<directory", p.stderr)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
