"""The dnsbl plugin in the real posternd, against a real DNS server (unbound
from dnsserver.py) serving test blocklists; no mock resolver.

Zones: bl.test lists 127.0.0.1 (1.0.0.127.bl.test A 127.0.0.2 + TXT) and ::1
(its 32 reversed nibbles); clean.test lists nothing; score.test lists
127.0.0.1 with 127.0.0.4; dbl.test (RHSBL) lists spam.example; uri.test lists
phish.example; dead.test never answers. Client connections come from
127.0.0.1 (and ::1 for the IPv6 case).
"""

import base64
import os
import smtplib
import socket
import sys
import time
import unittest
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import Daemon, free_port  # noqa: E402
from dnsserver import DnsServer  # noqa: E402

V6_LOOPBACK_NIBBLES = ".".join(["1"] + ["0"] * 31)

ZONES = {
    "bl.test": [
        "1.0.0.127.bl.test. 60 IN A 127.0.0.2",
        # One word: dnsserver.py quotes local-data with "...", so a TXT with
        # spaces would reach unbound mangled (see the report).
        "1.0.0.127.bl.test. 60 IN TXT listed-by-bl.test-see-https://bl.test/127.0.0.1",
        "%s.bl.test. 60 IN A 127.0.0.3" % V6_LOOPBACK_NIBBLES,
    ],
    "clean.test": ["ns.clean.test. 60 IN A 192.0.2.53"],
    "score.test": ["1.0.0.127.score.test. 60 IN A 127.0.0.4"],
    "dbl.test": [
        "spam.example.dbl.test. 60 IN A 127.0.1.2",
        "spam.example.dbl.test. 60 IN TXT spam.example-is-a-spam-domain",
    ],
    "uri.test": ["phish.example.uri.test. 60 IN A 127.0.0.2"],
    "wl.example": ["relay.wl.example. 60 IN A 127.0.0.1"],
    "partner.example": [
        "partner.example. 60 IN MX 10 mx.partner.example.",
        "mx.partner.example. 60 IN A 127.0.0.1",
    ],
}

SMTP_XML = "<local-domain>example.test</local-domain>"
SMTP_ATTRS = {"tarpit-delay": "0", "min-free-disk": "0"}
LISTENERS = [{"name": "smtp", "protocol": "smtp", "tls": "none"}]


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class DualStackDaemon(Daemon):
    """A Daemon whose start() also waits for listeners on ::1 (harness.Daemon
    probes 127.0.0.1 only)."""

    def start(self, timeout=20.0):
        v6 = [l for l in self.listeners if ":" in l.get("address", "")]
        for l in v6:
            l["enabled"] = "false-for-probe"
        try:
            super().start(timeout)
        finally:
            for l in v6:
                l.pop("enabled")
        return self

    def manifest(self):
        # The listeners' probe marker never reaches posternd.
        saved = [(l, l.pop("enabled")) for l in self.listeners if l.get("enabled") == "false-for-probe"]
        try:
            return super().manifest()
        finally:
            for l, v in saved:
                l["enabled"] = v

    def wait_port(self, address, port, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("posternd did not listen on [%s]:%s:\n%s" % (address, port, self.log()))


class DnsblIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer(ZONES, dead_zones=["dead.test"])
        cls.dns.start()

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def daemon(self, inner_xml, attrs=None, listeners=None, extra_xml="", cls=Daemon):
        plugin_attrs = {"enabled": "true", "timeout": "5s", "on-failure": "continue"}
        plugin_attrs.update(attrs or {})
        d = cls(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, listeners=listeners or [dict(l) for l in LISTENERS],
                plugins=[("dnsbl", inner_xml, plugin_attrs)],
                extra_xml=self.dns.manifest_xml() + extra_xml)
        d.start()
        self.addCleanup(d.stop)
        return d

    def wait_log(self, d, needle, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in d.log():
                return True
            time.sleep(0.05)
        return False

    def send(self, d, sender="alice@sender.example", body="Subject: hi\r\n\r\nhello\r\n", host="127.0.0.1"):
        """One message; returns the reply to the end of data as (code, text)."""
        with smtplib.SMTP(host, d.port("smtp"), timeout=15) as c:
            c.ehlo("client.example")
            code, msg = c.mail(sender)
            if code != 250:
                return code, msg.decode()
            code, msg = c.rcpt("bob@example.test")
            self.assertEqual(code, 250, msg)
            code, msg = c.data(body.encode() if isinstance(body, str) else body)
            return code, msg.decode()

    # -- ip lists ------------------------------------------------------------

    def test_listed_ipv4_is_rejected_at_connect_with_the_txt_text(self):
        self.assertEqual(self.dns.query("1.0.0.127.bl.test"), (0, 1))
        d = self.daemon('<list zone="bl.test" action="reject" timeout="2s"/><list zone="clean.test"/>')
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=15)
        self.assertEqual(cm.exception.smtp_code, 554)
        text = cm.exception.smtp_error.decode()
        self.assertIn("5.7.1", text)
        self.assertIn("client [127.0.0.1] blocked using bl.test", text)
        self.assertIn("blocked using bl.test; listed-by-bl.test-see-https://bl.test/127.0.0.1", text)
        self.assertTrue(self.wait_log(d, "dnsbl: hit list=bl.test type=ip ip=127.0.0.1 answer=127.0.0.2 action=reject"),
                        d.log())
        self.assertEqual(d.spool_messages(), [])

    def test_not_listed_ipv4_and_a_dead_list_still_accept_within_the_timeout(self):
        d = self.daemon('<list zone="clean.test"/><list zone="dead.test" timeout="1s"/>')
        start = time.monotonic()
        code, msg = self.send(d)
        elapsed = time.monotonic() - start
        self.assertEqual(code, 250, msg)
        self.assertEqual(len(d.wait_for_messages(1)), 1)
        # The dead list costs its 1 s timeout once (at connect), not a failed message.
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 2.5, "dead list held the session %.2fs" % elapsed)
        self.assertNotIn("dnsbl: hit", d.log())
        self.assertTrue(self.wait_log(d, "list dead.test is not answering"), d.log())

    def test_score_action_shows_in_the_stored_headers(self):
        d = self.daemon('<list zone="score.test" action="score" symbol="TEST_SCORE_LISTED" weight="7"/>'
                        '<list zone="dead.test" timeout="500ms"/>',
                        extra_xml='<scoring add-header="5"/>')
        code, msg = self.send(d)
        self.assertEqual(code, 250, msg)
        msgs = d.wait_for_messages(1)
        self.assertEqual(len(msgs), 1)
        head = msgs[0]["message"].split(b"\r\n\r\n", 1)[0].decode()
        self.assertIn("X-Spam-Flag: YES", head)
        self.assertIn("TEST_SCORE_LISTED(7.00)", head)
        self.assertIn("dnsbl: hit list=score.test type=ip ip=127.0.0.1 answer=127.0.0.4 action=score "
                      "symbol=TEST_SCORE_LISTED weight=7.00", d.log())

    def test_answers_are_cached_by_the_daemons_resolver(self):
        # A DNS server of its own, stopped after the first lookups: the second
        # session must still be refused (A and TXT from posternd's cache, TTL 60 s).
        dns = DnsServer({"bl.test": ZONES["bl.test"]})
        dns.start()
        stopped = False
        try:
            d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, listeners=[dict(l) for l in LISTENERS],
                       # cache-size="0": no plugin cache, so this is the resolver's.
                       plugins=[("dnsbl", '<list zone="bl.test" timeout="1s"/>', {"timeout": "5s", "cache-size": "0"})],
                       extra_xml=dns.manifest_xml())
            d.start()
            self.addCleanup(d.stop)
            for attempt in range(2):
                if attempt == 1:
                    dns.stop()
                    stopped = True
                start = time.monotonic()
                with self.assertRaises(smtplib.SMTPConnectError) as cm:
                    smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=15)
                self.assertEqual(cm.exception.smtp_code, 554)
                self.assertIn(b"blocked using bl.test; listed-by-bl.test", cm.exception.smtp_error)
            self.assertLess(time.monotonic() - start, 0.9)  # no lookup waited out its 1 s timeout
        finally:
            if not stopped:
                dns.stop()

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback")
    def test_listed_ipv6_client_is_rejected_by_its_nibble_name(self):
        port6 = free_port()
        listeners = [dict(LISTENERS[0]), {"name": "smtp6", "protocol": "smtp", "tls": "none", "address": "::1",
                                          "port": str(port6)}]
        d = self.daemon('<list zone="bl.test"/>', listeners=listeners, cls=DualStackDaemon)
        d.wait_port("::1", port6)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("::1", port6, timeout=15)
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn("client [::1] blocked using bl.test", cm.exception.smtp_error.decode())
        self.assertTrue(self.wait_log(d, "dnsbl: hit list=bl.test type=ip ip=::1 answer=127.0.0.3 action=reject"),
                        d.log())

    # -- rhs and uri lists --------------------------------------------------

    def test_rhsbl_rejects_a_listed_sender_domain_at_mail_from(self):
        d = self.daemon('<list zone="dbl.test" type="rhs"/><list zone="dead.test" type="rhs" timeout="300ms"/>')
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=15) as c:
            c.ehlo("client.example")
            code, msg = c.mail("mallory@Spam.Example")
            self.assertEqual(code, 550, msg)
            self.assertIn(b"5.7.1 Service unavailable; sender domain spam.example blocked using dbl.test; "
                          b"spam.example-is-a-spam-domain", msg)
            code, msg = c.mail("alice@clean.example")
            self.assertEqual(code, 250, msg)
        self.assertIn("dnsbl: hit list=dbl.test type=rhs name=spam.example answer=127.0.1.2 action=reject "
                      "client=127.0.0.1 source=sender stage=mail_from", d.log())

    def test_uri_list_rejects_a_url_in_a_base64_html_part_at_data_end(self):
        d = self.daemon('<list zone="uri.test" type="uri"/><list zone="dead.test" type="uri" timeout="300ms"/>')
        msg = MIMEMultipart("alternative")
        msg["Subject"] = "your account"
        msg.attach(MIMEText("Please log in to your account.\n", "plain"))
        # utf-8 makes Python's email package encode the part in base64.
        html = MIMEText('<p>Log in <a href="https://secure.login.Phish.Example/x?a=1&amp;b=2">here</a></p>\n',
                        "html", "utf-8")
        msg.attach(html)
        raw = msg.as_string().replace("\n", "\r\n")
        self.assertNotIn("phish", raw.lower())  # the URL is only in the base64 body
        code, text = self.send(d, body=raw)
        self.assertEqual(code, 550, text)
        self.assertIn("5.7.1 Message refused; it contains a URL of phish.example, blocked using uri.test", text)
        self.assertIn("dnsbl: hit list=uri.test type=uri name=phish.example answer=127.0.0.2 action=reject", d.log())
        self.assertEqual(d.spool_messages(), [])
        # A message without listed URLs passes.
        code, text = self.send(d, body="Subject: fine\r\n\r\nsee https://www.clean.example/ now\r\n")
        self.assertEqual(code, 250, text)

    # -- local lists and exceptions ------------------------------------------

    def test_exceptions_bypass_every_lookup(self):
        for exc in ("<address>127.0.0.0/8</address>", "<address>127.0.0.1-127.0.0.9</address>",
                    "<mx>partner.example</mx>"):
            with self.subTest(exception=exc):
                d = self.daemon('<list zone="bl.test"/><list zone="dbl.test" type="rhs"/>'
                                '<exceptions>%s</exceptions>' % exc)
                if "mx" in exc:  # MX, then the MX host's address, resolved at start
                    self.assertTrue(self.wait_log(d, "exceptions mx domain partner.example: 1 addresses"), d.log())
                seen = len(d.log())
                code, msg = self.send(d, sender="mallory@spam.example")
                self.assertEqual(code, 250, msg)
                self.assertNotIn("dnsbl: hit", d.log()[seen:])
                self.assertIn("excepted ip=127.0.0.1", d.log()[seen:])
                d.stop()
        d = self.daemon('<list zone="dbl.test" type="rhs"/><exceptions><domain>spam.example</domain></exceptions>')
        code, msg = self.send(d, sender="mallory@news.spam.example")
        self.assertEqual(code, 250, msg)

    def test_blacklist_rejects_and_whitelist_domain_skips_lookups(self):
        d = self.daemon('<list zone="bl.test"/><blacklist><address>127.0.0.0/8</address></blacklist>')
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=15)
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn(b"5.7.1 Service unavailable; client [127.0.0.1] is blacklisted", cm.exception.smtp_error)
        self.assertIn("dnsbl: hit list=blacklist type=local ip=127.0.0.1 answer=local entry=address action=reject",
                      d.log())
        d.stop()

        # relay.wl.example has A 127.0.0.1: whitelisted, although blacklisted and DNS-listed.
        d = self.daemon('<list zone="bl.test"/><whitelist><domain>relay.wl.example</domain></whitelist>'
                        '<blacklist><address>127.0.0.1</address></blacklist>')
        # The harness's start-up probe may come before relay.wl.example resolved.
        self.assertTrue(self.wait_log(d, "whitelist domain relay.wl.example: 1 addresses"), d.log())
        seen = len(d.log())
        code, msg = self.send(d)
        self.assertEqual(code, 250, msg)
        self.assertNotIn("dnsbl: hit", d.log()[seen:])
        self.assertIn("whitelisted ip=127.0.0.1 entry=domain:relay.wl.example", d.log()[seen:])
        self.assertNotIn("could not tag the session whitelisted", d.log())  # ABI 1.1 session tag set

    def test_bad_configuration_is_refused_with_its_line(self):
        d = self.daemon('\n<list zone="bl.test" action="drop"/>')
        self.assertTrue(self.wait_log(d, 'action="drop" is not reject, tempfail or score'), d.log())
        line = [l for l in d.log().splitlines() if 'action="drop"' in l][0]
        self.assertIn("(line ", line)
        # The daemon keeps serving without the plugin.
        code, msg = self.send(d)
        self.assertEqual(code, 250, msg)


if __name__ == "__main__":
    unittest.main()
