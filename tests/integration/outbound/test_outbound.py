"""ABI 1.3 end to end (issue 12 §3): the outbound_probe test plugin
(tests/abi/outbound_probe.cpp, written with the C++ SDK) runs in a real
posternd. At start it connects through the host to a local echo server and
gets its line back, connects to a closed port and gets `refused`, and injects
two messages for a local account: both land in the mailbox store (checked in
the message files and the SQLite index), the one that names the plugin in its
skip list never reaches the plugin's delivery hook, the other one does, with
the `postern.injected` tag."""

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "mailstore"))
from harness import BIN_DIR, BINARY_DIR, Daemon, free_port  # noqa: E402
import test_local_delivery as local_delivery  # noqa: E402  (mailbox(): the store's files and index)

ABI_PLUGIN_DIR = os.path.join(BINARY_DIR, "tests", "abi", "plugins")


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class OutboundTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.echo = EchoServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=cls.echo.serve_forever, daemon=True).start()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        cls.closed_port = closed.getsockname()[1]
        closed.close()  # bound once, nobody listens: connect is refused
        extra = ('<directory hash-time="1" hash-memory="1M" refresh="200ms"/><mailstore/>'
                 '<queue retry="1h" delay-warning="0" destination-backoff="0"/>')
        cls.d = Daemon(smtp_xml="<local-domain>example.test</local-domain>",
                       smtp_attrs={"tarpit-delay": "0", "min-free-disk": "0"}, extra_xml=extra,
                       plugins=[("outbound_probe", "", {"echo-port": cls.echo.server_address[1],
                                                        "closed-port": cls.closed_port,
                                                        "inject-to": "alice@example.test"})],
                       plugin_dirs=[ABI_PLUGIN_DIR])
        with open(cls.d.config_path, "w") as f:
            f.write(cls.d.manifest())
        p = subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", cls.d.config_path,
                            "user", "add", "alice@example.test", "--password-stdin"],
                           input="a-pw\n", capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("posternctl user add -> %d: %s" % (p.returncode, p.stderr))
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.echo.shutdown()
        cls.echo.server_close()

    def results(self):
        path = os.path.join(self.d.data_dir, "state", "outbound_probe", "results.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [l.rstrip("\n") for l in f]

    def wait_result(self, prefix, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            for line in self.results():
                if line.startswith(prefix):
                    return line
            time.sleep(0.1)
        self.fail("no %r in results %r; log:\n%s" % (prefix, self.results(), self.d.log()[-3000:]))

    def wait_mail(self, subject, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            for uid, msg, _, _ in local_delivery.mailbox(self.d.data_dir, "alice@example.test"):
                if msg["Subject"] == subject:
                    return uid, msg
            time.sleep(0.1)
        self.fail("%r never reached alice; log:\n%s" % (subject, self.d.log()[-3000:]))

    def test_echo_comes_back_through_the_hosts_stream(self):
        self.assertEqual(self.wait_result("echo "), "echo hello through postern")
        self.assertEqual(self.wait_result("echo-closed "), "echo-closed 3")  # the plugin closed it
        self.assertNotIn("echo-failed", "\n".join(self.results()))

    def test_closed_port_is_refused(self):
        self.assertEqual(self.wait_result("closed "), "closed refused")

    def test_injected_messages_land_in_the_mailbox(self):
        for subject in ("skipped", "observed"):
            qid = self.wait_result("injected %s " % subject).split()[-1]
            self.assertRegex(qid, r"^[0-9a-f]{20}$")
            uid, msg = self.wait_mail(subject)
            self.assertGreaterEqual(uid, 1)
            self.assertEqual(msg["Return-Path"], "<>")  # the null sender
            self.assertEqual(msg["Delivered-To"], "alice@example.test")
            received = msg.get_all("Received")
            self.assertTrue(any("(Postern) id %s" % qid in r and "injected by plugin outbound_probe" in r
                                for r in received), received)
            self.assertEqual(msg["Auto-Submitted"], "auto-generated")
            self.assertIn("Injected by outbound_probe.", msg.get_payload())

    def test_skip_list_and_injected_tag_reach_the_queue_hooks(self):
        self.wait_mail("skipped")
        self.wait_mail("observed")
        self.assertEqual(self.wait_result("delivery observed"), "delivery observed injected-by=outbound_probe")
        self.assertFalse([l for l in self.results() if l.startswith("delivery skipped")], self.results())


if __name__ == "__main__":
    unittest.main()
