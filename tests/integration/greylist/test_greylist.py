"""greylist (F4) in the real daemon: smtplib from distinct loopback source
addresses (127.0.N.x = distinct /24 client networks), a 2-second delay, the
exception list, and posternctl greylist list/allow/flush on the live database."""

import json
import os
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon  # noqa: E402

POSTERNCTL = os.path.join(BIN_DIR, "posternctl")
SMTP_XML = "<local-domain>example.test</local-domain>"
SMTP_ATTRS = {"tarpit-delay": "0", "min-free-disk": "0"}
GREYLIST = ("greylist", '<except ip="127.0.9.9"/><except recipient="postmaster@example.test"/>',
            {"delay": "2s", "window": "1h"})


class GreylistDaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, plugins=[GREYLIST])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def smtp(self, source):
        s = smtplib.SMTP("127.0.0.1", self.d.port(), source_address=(source, 0), timeout=10)
        s.ehlo("client.example")
        return s

    def ctl(self, *args, expect=0):
        proc = subprocess.run([POSTERNCTL, "--config", self.d.config_path, "greylist"] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(proc.returncode, expect, proc.stdout + proc.stderr)
        return proc.stdout

    def attempt(self, source, sender, rcpt):
        with self.smtp(source) as s:
            s.mail(sender)
            return s.rcpt(rcpt)

    def test_first_sight_is_greylisted_and_a_retry_after_the_delay_passes(self):
        src, sender, rcpt = "127.0.1.1", "alice@example.org", "bob@example.test"
        self.assertEqual(self.attempt(src, sender, rcpt), (451, b"4.7.1 Greylisted, try again in 2 seconds"))
        code, text = self.attempt(src, sender, rcpt)
        self.assertEqual(code, 451, text)  # too early
        time.sleep(2.2)
        # Another host of the same /24 retries and the message goes through.
        with self.smtp("127.0.1.2") as s:
            s.mail(sender)
            self.assertEqual(s.rcpt(rcpt)[0], 250)
            self.assertEqual(s.data(b"Subject: greylisted once\r\n\r\nbody\r\n")[0], 250)
        msgs = self.d.wait_for_messages(1)
        self.assertTrue(any(m["rcpts"][0]["address"] == rcpt for m in msgs))
        self.assertIn("passed after", self.d.log())
        self.assertIn('job=greylist/prune id=', self.d.log())  # the pruning cron job is registered
        # The /24 is auto-whitelisted now (auto-whitelist-after = 1): a new triplet passes.
        self.assertEqual(self.attempt("127.0.1.3", "carol@example.org", "dave@example.test")[0], 250)

    def test_exceptions_pass_at_once(self):
        self.assertEqual(self.attempt("127.0.9.9", "x@example.org", "y@example.test")[0], 250)
        self.assertEqual(self.attempt("127.0.8.1", "x@example.org", "postmaster@example.test")[0], 250)
        self.assertEqual(self.attempt("127.0.8.1", "x@example.org", "z@example.test")[0], 451)

    def test_posternctl_list_allow_flush_while_running(self):
        self.assertEqual(self.attempt("127.0.3.1", "erin@example.org", "frank@example.test")[0], 451)
        listed = json.loads(self.ctl("list", "--json"))
        self.assertIn({"network": "127.0.3.0/24", "sender": "erin@example.org", "recipient": "frank@example.test"},
                      [{k: t[k] for k in ("network", "sender", "recipient")} for t in listed["triplets"]])
        self.assertIn("127.0.3.0/24", self.ctl("list"))

        # A manual allow takes effect at once in the running daemon.
        self.assertEqual(self.attempt("127.0.4.5", "gina@example.org", "hank@example.test")[0], 451)
        self.assertEqual(self.ctl("allow", "127.0.4.0/24").strip(), "allowed 127.0.4.0/24")
        self.assertEqual(self.attempt("127.0.4.6", "ivan@example.org", "judy@example.test")[0], 250)
        whitelist = json.loads(self.ctl("list", "--json"))["whitelist"]
        self.assertIn({"network": "127.0.4.0/24", "source": "manual", "passes": 0, "expires": None}, whitelist)
        self.ctl("allow", "not-an-ip", expect=2)

        # flush --expired keeps fresh entries; flush drops triplets but keeps manual allows.
        self.assertIn("deleted 0 triplet(s)", self.ctl("flush", "--expired"))
        self.ctl("flush")
        listed = json.loads(self.ctl("list", "--json"))
        self.assertEqual(listed["triplets"], [])
        self.assertEqual([w["network"] for w in listed["whitelist"]], ["127.0.4.0/24"])
        self.assertEqual(self.attempt("127.0.3.1", "erin@example.org", "frank@example.test"),
                         (451, b"4.7.1 Greylisted, try again in 2 seconds"))
        self.ctl("flush", "--all")
        self.assertEqual(json.loads(self.ctl("list", "--json"))["whitelist"], [])


class GreylistConfigTest(unittest.TestCase):
    def test_bad_config_is_refused_with_the_reason(self):
        d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS,
                   plugins=[("greylist", '<except cidr="10.0.0.0/99"/>', {})])
        try:
            d.start()
            # A plugin that fails init is left out and logged; the daemon runs on.
            deadline = time.monotonic() + 5
            while "expected address/prefix" not in d.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIn('<except cidr="10.0.0.0/99">: expected address/prefix', d.log())
        except RuntimeError as e:
            self.assertIn("expected address/prefix", str(e))
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
