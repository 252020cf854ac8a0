"""Core foundation against the real daemon: manifest checks, plugin refusals
that leave the daemon serving, hooks acting on real SMTP sessions, SIGHUP
reload (good and bad), and posternctl plugins --order."""

import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, BINARY_DIR, Daemon  # noqa: E402

ABI_PLUGINS = os.environ.get("POSTERN_ABI_PLUGIN_DIR", os.path.join(BINARY_DIR, "tests", "abi", "plugins"))
LOCAL = '<local-domain>example.test</local-domain>'
MESSAGE = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
PLAIN = [{"name": "smtp", "protocol": "smtp", "tls": "none"}]


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="postern-cc-")
        self.path = os.path.join(self.dir, "postern.xml")

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_valid_manifest_passes(self):
        self.write('<postern><server name="mx.example.test" data-dir="var"/></postern>\n')
        r = run(os.path.join(BIN_DIR, "posternd"), "--check-config", "--config", self.path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("OK", r.stdout)

    def test_every_error_is_reported_with_file_and_line(self):
        self.write("<postern>\n"
                   "  <server name=\"mx.example.test\" data-dir=\"var\"/>\n"
                   "  <listeners>\n"
                   "    <listener name=\"smtp\" protocol=\"smtp\" port=\"0\"/>\n"
                   "    <listener name=\"smtp2\" protocol=\"smtp\" port=\"25\" tls=\"maybe\"/>\n"
                   "  </listeners>\n"
                   "  <smtp max-message-size=\"huge\"/>\n"
                   "  <plugins><plugin name=\"ghost\"/></plugins>\n"
                   "</postern>\n")
        r = run(os.path.join(BIN_DIR, "posternd"), "--check-config", "--config", self.path)
        self.assertNotEqual(r.returncode, 0)
        out = r.stdout
        self.assertIn("%s:4: " % self.path, out)
        self.assertIn("%s:5: " % self.path, out)
        self.assertIn("%s:7: " % self.path, out)
        self.assertIn("%s:8: warning: plugin 'ghost'" % self.path, out)

    def test_daemon_refuses_to_start_on_invalid_manifest(self):
        self.write("<postern>\n  <server name=\"mx.example.test\"/>\n</postern>\n")
        r = run(os.path.join(BIN_DIR, "posternd"), "--config", self.path, "--foreground")
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:2: <server>: data-dir is required" % self.path, r.stderr)
        self.assertIn("not starting", r.stderr)


class PluginHostTest(unittest.TestCase):
    def start(self, plugins, **kw):
        d = Daemon(smtp_xml=LOCAL, listeners=PLAIN, plugins=plugins,
                   plugin_dirs=[ABI_PLUGINS, os.path.join(BINARY_DIR, "plugins")], **kw)
        d.start()
        self.addCleanup(d.stop)
        return d

    def test_broken_plugins_are_refused_and_the_daemon_serves(self):
        d = self.start([("abi_major", ""), ("no_entry", ""), ("init_fails", ""), ("entry_throws", ""),
                        ("good", "", {"reject-local": "blocked"})])
        log = d.log()
        self.assertIn("abi_major.so: refused: descriptor declares ABI 2.0", log)
        self.assertIn("no_entry.so: refused: entry symbol postern_plugin_entry_v1 missing", log)
        self.assertIn("init_fails.so: refused: init failed: missing required attribute 'zone'", log)
        self.assertIn("entry_throws.so: refused: entry point threw", log)
        with self.transaction(d) as s:
            code, text = s.rcpt("blocked@example.test")
            self.assertEqual(code, 550)
            self.assertIn(b"5.7.1 rejected by good", text)
            code, _ = s.rcpt("b@example.test")
            self.assertEqual(code, 250)
            code, _ = s.data(MESSAGE)
            self.assertEqual(code, 250)
        msgs = d.wait_for_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"X-Good: seen", msgs[0]["message"])

    def test_pending_hook_answers_from_another_thread(self):
        d = self.start([("async", "", {"mode": "complete", "verdict": "reject", "delay": "50"})])
        with self.transaction(d) as s:
            started = time.monotonic()
            code, text = s.rcpt("b@example.test")
            self.assertGreaterEqual(time.monotonic() - started, 0.04)
            self.assertEqual((code, text), (554, b"5.7.1 async says no"))

    def test_hook_timeout_applies_on_failure_tempfail(self):
        d = self.start([("async", "", {"mode": "never", "timeout": "200ms", "on-failure": "tempfail"})])
        with self.transaction(d) as s:
            code, text = s.rcpt("b@example.test")
            self.assertEqual(code, 451)
            self.assertIn(b"4.3.0", text)
            self.assertEqual(s.noop()[0], 250, "the session goes on")

    def test_throwing_hook_does_not_end_the_session(self):
        d = self.start([("hook_throws", "", {"on-failure": "continue"})])
        with self.transaction(d) as s:
            self.assertEqual(s.rcpt("b@example.test")[0], 250)
            self.assertEqual(s.data(MESSAGE)[0], 250)
        self.assertIn("plugin=hook_throws stage=rcpt_to failed", d.log())

    def test_sighup_reload_swaps_the_chain_and_old_sessions_drain(self):
        d = self.start([("good", "", {"reject-local": "first"})])
        old = self.transaction(d)
        self.assertEqual(old.rcpt("first@example.test")[0], 550)

        d.plugins = [("good", "", {"reject-local": "second"})]
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reloaded" in d.log()), d.log())

        with self.transaction(d) as s:
            self.assertEqual(s.rcpt("first@example.test")[0], 250)
            self.assertEqual(s.rcpt("second@example.test")[0], 550)
        # The session opened before the reload still runs on the old chain.
        self.assertEqual(old.rcpt("first@example.test")[0], 550)
        self.assertEqual(old.rcpt("second@example.test")[0], 250)
        old.quit()

        # A broken manifest is reported and the running chain stays.
        with open(d.config_path, "w") as f:
            f.write("<postern><server name=\"x\"/>\n")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "keeping the running configuration" in d.log()), d.log())
        with self.transaction(d) as s:
            self.assertEqual(s.rcpt("second@example.test")[0], 550)
        self.assertIsNone(d.proc.poll(), "posternd must still run")

    def transaction(self, d):
        """An SMTP session with d's smtp listener, after EHLO and MAIL FROM."""
        s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10)
        s.ehlo("client.example.org")
        s.mail("a@example.org")
        return s

    def send(self, d):
        with self.transaction(d) as s:
            s.rcpt("b@example.test")
            return s.data(MESSAGE)

    def test_scores_over_the_header_threshold_mark_the_message(self):
        d = self.start([("good", "")], extra_xml='<scoring add-header="0.4" reject="0"/>')
        self.assertEqual(self.send(d)[0], 250)
        msg = d.wait_for_messages(1)[0]["message"]
        self.assertIn(b"X-Spam-Flag: YES", msg)
        self.assertIn(b"GOOD_SEEN(0.50)", msg)

    def test_scores_over_the_reject_threshold_reject_at_end_of_data(self):
        d = self.start([("good", "")], extra_xml='<scoring add-header="0" reject="0.5"/>')
        code, text = self.send(d)
        self.assertEqual(code, 550)
        self.assertIn(b"5.7.1 Message rejected as spam", text)
        self.assertEqual(d.spool_messages(), [])

    def test_discard_answers_250_and_stores_nothing(self):
        d = self.start([("good", "", {"data-end": "discard"})])
        self.assertEqual(self.send(d)[0], 250)
        time.sleep(0.2)
        self.assertEqual(d.spool_messages(), [])
        self.assertEqual(d.spool_messages("quarantine"), [])

    def test_quarantine_stores_into_the_quarantine_queue(self):
        d = self.start([("good", "", {"data-end": "quarantine"})])
        self.assertEqual(self.send(d)[0], 250)
        held = d.wait_for_messages(1, "quarantine")
        self.assertEqual(len(held), 1)
        self.assertEqual(d.spool_messages(), [])

    def test_pending_quarantine_stores_into_the_quarantine_queue(self):
        # Like the synchronous QUARANTINE above, from a hook that completes on its own
        # thread 30 ms later, with its sender and body edits (ABI 1.3) applied to the held copy.
        d = self.start([("events_probe", "", {"verdict": "quarantine", "delay": "30", "timeout": "5s",
                                              "mail-from": "quarantine@example.test",
                                              "mail-from-args": "RET=HDRS", "replace-body": "defanged"})])
        self.assertEqual(self.send(d)[0], 250)
        held = d.wait_for_messages(1, "quarantine")
        self.assertEqual(len(held), 1)
        self.assertEqual(d.spool_messages(), [])
        self.assertEqual(held[0]["mail_from"], "quarantine@example.test")
        self.assertEqual(held[0]["ret"], "HDRS")
        self.assertIn(b"\r\nSubject: hi\r\n\r\ndefanged\r\n", held[0]["message"])
        self.assertTrue(held[0]["message"].endswith(b"\r\n\r\ndefanged\r\n"), held[0]["message"])

    def test_data_end_hook_edits_the_envelope(self):
        d = self.start([("good", "", {"add-rcpt": "archive@example.test", "remove-rcpt": "b@example.test"})])
        with self.transaction(d) as s:
            s.rcpt("b@example.test")
            s.rcpt("c@example.test")
            self.assertEqual(s.data(MESSAGE)[0], 250)
        msg = d.wait_for_messages(1)[0]
        rcpts = sorted(r["address"] for r in msg["rcpts"])
        self.assertEqual(rcpts, ["archive@example.test", "c@example.test"])

    def test_posternctl_prints_the_chain_per_stage(self):
        d = Daemon(smtp_xml=LOCAL, listeners=PLAIN, plugins=[("good", ""), ("async", ""), ("abi_major", "")],
                   plugin_dirs=[ABI_PLUGINS])
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        self.addCleanup(d.stop)
        r = run(os.path.join(BIN_DIR, "posternctl"), "--config", d.config_path, "plugins", "--order")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = {l.split()[0]: l for l in r.stdout.splitlines() if l and not l.startswith(" ")}
        self.assertIn("good -> async", lines["rcpt_to"])
        self.assertIn("(none)", lines["auth"])
        self.assertIn("abi_major", r.stdout.split("refused:")[1])


if __name__ == "__main__":
    unittest.main()
