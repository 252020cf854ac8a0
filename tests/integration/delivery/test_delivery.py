"""Outbound delivery against real peers: Postfix's smtp-sink (with its fault
injection), a second posternd (STARTTLS, AUTH, per-recipient policy) and a
real DNS server (unbound, tests/integration/dnsserver.py) with MX, null-MX and
A-only zones. Driven through `posternctl relay test`, which runs the same SMTP
client (core/delivery) that posternd's queue manager uses.
"""

import email
import email.policy
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon, free_port, hash_password  # noqa: E402
from dnsserver import DnsServer  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
POSTERNCTL = os.path.join(BIN_DIR, "posternctl")
PASSWORD = "relay-secret-9"

ZONES = {
    "mx.test": ["mx.test. 300 IN MX 10 mail.mx.test.", "mail.mx.test. 300 IN A 127.0.0.1"],
    "nullmx.test": ["nullmx.test. 300 IN MX 0 ."],
    "aonly.test": ["aonly.test. 300 IN A 127.0.0.1"],
    # The preferred MX refuses connections (nothing listens on 127.0.0.2), the second takes the mail.
    "multi.test": ["multi.test. 300 IN MX 10 dead.multi.test.", "multi.test. 300 IN MX 20 mail.multi.test.",
                   "dead.multi.test. 300 IN A 127.0.0.2", "mail.multi.test. 300 IN A 127.0.0.1"],
    "noaddr.test": ["noaddr.test. 300 IN MX 10 ghost.noaddr.test."],
}


class SmtpSink:
    """smtp-sink on a loopback port, dumping every transaction into a directory."""

    def __init__(self, *options):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        os.chmod(self.dir, 0o777)  # smtp-sink runs as nobody
        args = [SMTP_SINK, "-u", "nobody", "-d", os.path.join(self.dir, "%H%M%S."), *options,
                "127.0.0.1:%d" % self.port, "32"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.recv(100)
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("smtp-sink exited: %s" % self.proc.stderr.read().decode())
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def messages(self, count=1, timeout=5.0):
        """The dumped transactions (bytes), waiting up to `timeout` for `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(glob.glob(os.path.join(self.dir, "*")))
            if len(files) >= count or time.monotonic() > deadline:
                out = []
                for f in files:
                    with open(f, "rb") as fh:
                        out.append(fh.read())
                return out
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DeliveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer(ZONES)
        cls.dns.start()

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def sink(self, *options):
        s = SmtpSink(*options)
        self.addCleanup(s.stop)
        return s

    def manifest(self, delivery_xml):
        """A manifest for posternctl (never started as a daemon) with our <dns> and <delivery>."""
        d = Daemon(listeners=[], extra_xml=self.dns.manifest_xml() + delivery_xml)
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        os.chmod(d.config_path, 0o600)
        self.addCleanup(shutil.rmtree, d.dir, True)
        return d.config_path

    def relay(self, config, *args, expect_rc=None):
        cmd = [POSTERNCTL, "--config", config, "relay", "test", "--json", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if expect_rc is not None:
            self.assertEqual(p.returncode, expect_rc, "%s\nstdout: %s\nstderr: %s" % (cmd, p.stdout, p.stderr))
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError:
            self.fail("no JSON from %s: rc=%s stdout=%r stderr=%r" % (cmd, p.returncode, p.stdout, p.stderr))

    def delivery(self, sink_port, extra_attrs="", children=""):
        return '<delivery helo="relay.client.test" mx-port="%d" allow-loopback-mx="true" connect-timeout="5s" ' \
               'command-timeout="10s" greeting-timeout="10s" %s>%s</delivery>' % (sink_port, extra_attrs, children)

    # -- MX routing ----------------------------------------------------------
    def test_delivers_to_the_mx_host(self):
        sink = self.sink()
        cfg = self.manifest(self.delivery(sink.port))
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "bob@mx.test", expect_rc=0)
        r = out["recipients"][0]
        self.assertEqual(r["status"], "delivered")
        self.assertEqual(r["code"], 250)
        self.assertEqual(r["remote"], "mail.mx.test[127.0.0.1]:%d" % sink.port)
        self.assertEqual(out["tls"], "")
        msgs = sink.messages()
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"bob@mx.test", msgs[0])
        self.assertIn(b"Subject: Postern relay test", msgs[0])

    def test_null_mx_fails_permanently_without_connecting(self):
        sink = self.sink()
        cfg = self.manifest(self.delivery(sink.port))
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "bob@nullmx.test", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual((r["code"], r["enhanced"], r["status"]), (556, "5.1.10", "bounced"))
        self.assertEqual(sink.messages(timeout=0.5), [])

    def test_falls_back_to_the_a_record_without_mx(self):
        sink = self.sink()
        cfg = self.manifest(self.delivery(sink.port))
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "carol@aonly.test", expect_rc=0)
        self.assertEqual(out["recipients"][0]["remote"], "aonly.test[127.0.0.1]:%d" % sink.port)
        self.assertEqual(len(sink.messages()), 1)

    def test_tries_the_next_mx_when_the_first_refuses(self):
        sink = self.sink()
        cfg = self.manifest(self.delivery(sink.port))
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "dave@multi.test", expect_rc=0)
        self.assertEqual(out["recipients"][0]["remote"], "mail.multi.test[127.0.0.1]:%d" % sink.port)

    def test_mx_without_address_bounces_and_unknown_domain_bounces(self):
        sink = self.sink()
        cfg = self.manifest(self.delivery(sink.port))
        rc, out = self.relay(cfg, "--to", "x@noaddr.test", expect_rc=1)
        self.assertEqual(out["recipients"][0]["enhanced"], "5.4.4")

    def test_mx_on_loopback_is_a_loop_unless_allowed(self):
        sink = self.sink()
        xml = '<delivery mx-port="%d" connect-timeout="5s"/>' % sink.port
        rc, out = self.relay(self.manifest(xml), "--to", "bob@mx.test", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual((r["code"], r["enhanced"]), (554, "5.4.6"))
        self.assertIn("loops back to myself", r["text"])
        self.assertEqual(sink.messages(timeout=0.5), [])

    def test_direct_route_to_loopback_works(self):
        sink = self.sink()
        xml = '<delivery connect-timeout="5s"><route match="*@routed.test" to="[127.0.0.1:%d]"/></delivery>' % sink.port
        rc, out = self.relay(self.manifest(xml), "--to", "eve@routed.test", expect_rc=0)
        self.assertEqual(out["hop"], "[127.0.0.1]:%d" % sink.port)

    def test_domain_route_uses_the_mx_of_the_other_domain(self):
        sink = self.sink()
        xml = self.delivery(sink.port, children='<route match="*@gateway.test" to="mx.test"/>')
        rc, out = self.relay(self.manifest(xml), "--to", "frank@gateway.test", expect_rc=0)
        self.assertEqual(out["recipients"][0]["remote"], "mail.mx.test[127.0.0.1]:%d" % sink.port)
        self.assertIn(b"frank@gateway.test", sink.messages()[0])

    # -- fault injection (smtp-sink) ------------------------------------------
    def test_hard_reject_at_rcpt_bounces(self):
        sink = self.sink("-f", "rcpt")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual(r["status"], "bounced")
        self.assertGreaterEqual(r["code"], 500)

    def test_soft_reject_at_rcpt_defers(self):
        sink = self.sink("-r", "rcpt")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual(r["status"], "deferred")
        self.assertTrue(400 <= r["code"] < 500, r)

    def test_soft_reject_at_mail_defers(self):
        sink = self.sink("-r", "mail")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=1)
        self.assertEqual(out["recipients"][0]["status"], "deferred")

    def test_disconnect_after_data_defers(self):
        sink = self.sink("-q", ".")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual((r["code"], r["enhanced"], r["status"]), (451, "4.4.2", "deferred"))

    def test_disconnect_at_greeting_defers(self):
        sink = self.sink("-q", "connect")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=1)
        self.assertEqual(out["recipients"][0]["status"], "deferred")

    def test_server_without_esmtp_gets_helo(self):
        sink = self.sink("-e")
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", expect_rc=0)
        self.assertEqual(len(sink.messages()), 1)

    def test_require_tls_defers_against_a_peer_without_starttls(self):
        sink = self.sink()
        xml = self.delivery(sink.port)
        rc, out = self.relay(self.manifest(xml), "--to", "bob@mx.test", "--require-tls", expect_rc=1)
        r = out["recipients"][0]
        self.assertEqual((r["enhanced"], r["status"]), ("4.7.0", "deferred"))
        self.assertEqual(sink.messages(timeout=0.5), [])

    def test_8bit_message_is_downgraded_for_a_peer_without_8bitmime(self):
        sink = self.sink("-8")
        msg_path = os.path.join(sink.dir, "..", "postern-8bit-%d.eml" % os.getpid())
        body = "Grüße aus Köln = 100 €\n"
        raw = ("From: a@client.test\nTo: bob@mx.test\nSubject: umlauts\nMIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body).encode()
        with open(msg_path, "wb") as f:
            f.write(raw)
        self.addCleanup(os.unlink, msg_path)
        rc, out = self.relay(self.manifest(self.delivery(sink.port)), "--from", "a@client.test", "--to",
                             "bob@mx.test", "--message", msg_path, expect_rc=0)
        dumped = sink.messages()[0]
        self.assertTrue(all(b < 0x80 for b in dumped), "8-bit octets reached a 7-bit peer")
        start = dumped.find(b"From: a@client.test")
        self.assertGreaterEqual(start, 0, dumped)
        msg = email.message_from_bytes(dumped[start:], policy=email.policy.default)
        self.assertEqual(msg["Content-Transfer-Encoding"], "quoted-printable")
        # smtp-sink ends its dump file with one more newline than the message had.
        self.assertEqual(msg.get_content().replace("\r\n", "\n").rstrip("\n"), body.rstrip("\n"))

    def test_8bit_message_goes_unchanged_with_8bitmime(self):
        sink = self.sink()
        msg_path = os.path.join(tempfile.gettempdir(), "postern-8bit-ok-%d.eml" % os.getpid())
        raw = ("From: a@client.test\nSubject: umlauts\nMIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nKöln\n").encode()
        with open(msg_path, "wb") as f:
            f.write(raw)
        self.addCleanup(os.unlink, msg_path)
        self.relay(self.manifest(self.delivery(sink.port)), "--to", "bob@mx.test", "--message", msg_path,
                   expect_rc=0)
        self.assertIn("Köln".encode(), sink.messages()[0])


class TlsPeerTest(unittest.TestCase):
    """A second posternd as the remote MTA: STARTTLS, AUTH, per-recipient answers."""

    @classmethod
    def setUpClass(cls):
        cls.peer = Daemon(server_name="peer.example.test",
                          smtp_xml='<local-domain>example.test</local-domain>'
                                   '<account user="relay@example.test" password-hash="%s"/>'
                                   % hash_password(PASSWORD))
        cls.peer.start()

    @classmethod
    def tearDownClass(cls):
        cls.peer.stop()

    def manifest(self, delivery_xml):
        d = Daemon(listeners=[], extra_xml=delivery_xml)
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        os.chmod(d.config_path, 0o600)
        self.addCleanup(shutil.rmtree, d.dir, True)
        return d.config_path

    def relay(self, config, *args):
        cmd = [POSTERNCTL, "--config", config, "relay", "test", "--json", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError:
            self.fail("no JSON: rc=%s stdout=%r stderr=%r" % (p.returncode, p.stdout, p.stderr))

    def spooled_for(self, rcpt, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.peer.spool_messages():
                if any(r["address"] == rcpt for r in m["rcpts"]):
                    return m
            time.sleep(0.05)
        return None

    def test_opportunistic_starttls(self):
        cfg = self.manifest('<delivery helo="relay.client.test"/>')
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "tls1@example.test",
                             "--host", "127.0.0.1:%d" % self.peer.port("smtp"))
        self.assertEqual(rc, 0, out)
        self.assertTrue(out["tls"].startswith("TLSv1."), out)
        self.assertIsNotNone(self.spooled_for("tls1@example.test"))

    def test_tls_none_sends_in_clear(self):
        cfg = self.manifest('<delivery helo="relay.client.test"/>')
        rc, out = self.relay(cfg, "--to", "clear1@example.test", "--tls", "none",
                             "--host", "127.0.0.1:%d" % self.peer.port("smtp"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["tls"], "")

    def test_implicit_tls(self):
        cfg = self.manifest('<delivery helo="relay.client.test">'
                            '<smarthost host="127.0.0.1" port="%d" tls="implicit" user="relay@example.test" '
                            'password="%s"/></delivery>' % (self.peer.port("smtps"), PASSWORD))
        rc, out = self.relay(cfg, "--from", "relay@example.test", "--to", "implicit1@example.test")
        self.assertEqual(rc, 0, out)
        self.assertTrue(out["tls"].startswith("TLSv1."), out)

    def test_verify_fails_on_a_self_signed_certificate(self):
        cfg = self.manifest('<delivery helo="relay.client.test"/>')
        rc, out = self.relay(cfg, "--to", "verify1@example.test", "--verify",
                             "--host", "127.0.0.1:%d" % self.peer.port("smtp"))
        self.assertEqual(rc, 1, out)
        r = out["recipients"][0]
        self.assertEqual((r["enhanced"], r["status"]), ("4.7.5", "deferred"))
        self.assertIsNone(self.spooled_for("verify1@example.test", timeout=0.5))

    def test_smarthost_auth_over_starttls(self):
        cfg = self.manifest('<delivery helo="relay.client.test">'
                            '<smarthost host="127.0.0.1" port="%d" tls="starttls" require-tls="true" '
                            'user="relay@example.test" password="%s"/></delivery>'
                            % (self.peer.port("submission"), PASSWORD))
        rc, out = self.relay(cfg, "--from", "relay@example.test", "--to", "auth1@example.test")
        self.assertEqual(rc, 0, out)
        m = self.spooled_for("auth1@example.test")
        self.assertIsNotNone(m)
        self.assertEqual(m["auth_user"], "relay@example.test")

    def test_wrong_password_defers(self):
        cfg = self.manifest('<delivery helo="relay.client.test">'
                            '<smarthost host="127.0.0.1" port="%d" user="relay@example.test" password="wrong"/>'
                            '</delivery>' % self.peer.port("submission"))
        rc, out = self.relay(cfg, "--from", "relay@example.test", "--to", "auth2@example.test")
        self.assertEqual(rc, 1, out)
        r = out["recipients"][0]
        self.assertEqual((r["enhanced"], r["status"]), ("4.7.8", "deferred"))

    def test_rcpt_rejection_applies_to_that_recipient_only(self):
        cfg = self.manifest('<delivery helo="relay.client.test"/>')
        rc, out = self.relay(cfg, "--from", "a@client.test", "--to", "mixed1@example.test",
                             "--to", "someone@not-local.test", "--host", "127.0.0.1:%d" % self.peer.port("smtp"))
        self.assertEqual(rc, 1, out)
        ok, bad = out["recipients"]
        self.assertEqual(ok["status"], "delivered")
        self.assertEqual(bad["status"], "bounced")
        self.assertGreaterEqual(bad["code"], 550)
        m = self.spooled_for("mixed1@example.test")
        self.assertEqual([r["address"] for r in m["rcpts"]], ["mixed1@example.test"])


if __name__ == "__main__":
    unittest.main()
