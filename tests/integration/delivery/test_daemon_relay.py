"""posternd end to end: mail accepted over SMTP is relayed by the queue
manager through the delivery transports (core/delivery) to real peers:
smtp-sink behind a direct route and behind an MX from a real DNS server
(unbound), and a pipe route running a real program.
"""

import os
import shutil
import smtplib
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from harness import Daemon  # noqa: E402
from dnsserver import DnsServer  # noqa: E402
from test_delivery import SmtpSink  # noqa: E402


class DaemonRelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer({"mx.test": ["mx.test. 300 IN MX 10 mail.mx.test.", "mail.mx.test. 300 IN A 127.0.0.1"],
                             "nullmx.test": ["nullmx.test. 300 IN MX 0 ."]})
        cls.dns.start()
        cls.sink = SmtpSink()
        cls.out_dir = tempfile.mkdtemp(prefix="postern-pipe-out-")
        pipe_cmd = "/bin/sh -c 'cat > \"$0/$QUEUE_ID\"; echo \"$SENDER $RECIPIENTS\" > \"$0/$QUEUE_ID.env\"' %s" \
            % cls.out_dir
        delivery = ('<delivery helo="relay.example.test" mx-port="%d" allow-loopback-mx="true" '
                    'connect-timeout="5s" command-timeout="10s" pipe-timeout="20s">'
                    '<route match="*@routed.test" to="[127.0.0.1:%d]"/>'
                    '<route match="*@pipe.test" pipe="%s"/>'
                    '</delivery>') % (cls.sink.port, cls.sink.port, pipe_cmd.replace('"', "&quot;"))
        cls.d = Daemon(smtp_xml="<relay-domain>routed.test mx.test pipe.test nullmx.test</relay-domain>",
                       extra_xml=cls.dns.manifest_xml() + delivery)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.sink.stop()
        cls.dns.stop()
        shutil.rmtree(cls.out_dir, ignore_errors=True)

    def send(self, rcpts, body="Subject: relay\r\n\r\nrelayed body\r\n"):
        with smtplib.SMTP("127.0.0.1", self.d.port("smtp"), timeout=30) as s:
            s.sendmail("sender@client.test", rcpts, body)

    def wait_log(self, needle, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.d.log()
            if needle in log:
                return log
            time.sleep(0.1)
        self.fail("%r not in the log:\n%s" % (needle, self.d.log()[-4000:]))

    def dumped_for(self, rcpt, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.sink.messages(count=0, timeout=0):
                if ("<%s>" % rcpt).encode() in m:
                    return m
            time.sleep(0.1)
        self.fail("nothing for %s reached smtp-sink:\n%s" % (rcpt, self.d.log()[-4000:]))

    def test_direct_route_delivers_to_smtp_sink(self):
        self.send(["one@routed.test"])
        m = self.dumped_for("one@routed.test")
        self.assertIn(b"relayed body", m)
        self.wait_log("<one@routed.test> sent 250")

    def test_mx_delivery_through_the_dns_server(self):
        self.send(["two@mx.test"])
        self.dumped_for("two@mx.test")
        log = self.wait_log("<two@mx.test> sent 250")
        self.assertIn("remote=mail.mx.test[127.0.0.1]:%d" % self.sink.port, log)

    def test_null_mx_bounces(self):
        self.send(["three@nullmx.test"])
        self.wait_log("<three@nullmx.test> bounced 556 5.1.10")

    def test_pipe_route_runs_the_program(self):
        self.send(["robot@pipe.test"], "Subject: to a pipe\r\n\r\npiped body\r\n")
        deadline = time.monotonic() + 20
        env = None
        while time.monotonic() < deadline and env is None:
            for n in os.listdir(self.out_dir):
                if n.endswith(".env"):
                    env = n
            time.sleep(0.1)
        self.assertIsNotNone(env, self.d.log()[-4000:])
        qid = env[:-4]
        with open(os.path.join(self.out_dir, env)) as f:
            self.assertEqual(f.read().strip(), "sender@client.test robot@pipe.test")
        with open(os.path.join(self.out_dir, qid), "rb") as f:
            self.assertIn(b"piped body", f.read())
        self.wait_log("hop=pipe")


if __name__ == "__main__":
    unittest.main()
