"""Service listeners (ABI 1.2 streams) end to end: the real posternd serving the
echo_service test plugin (tests/abi/echo_service.cpp) on loopback.

Proves: echo and stream properties, STARTTLS that drops pipelined input,
implicit TLS, idle timeout (listener attribute and plugin override), pause,
work on the pool posted back to the strand, drain, plugin close, the
connection limit, ports left closed without a serving plugin, a SIGHUP reload
that drops the plugin, many connections killed at once, and a clean stop with
connections open.
"""

import os
import signal
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BINARY_DIR, Daemon  # noqa: E402

ABI_PLUGIN_DIR = os.path.join(BINARY_DIR, "tests", "abi", "plugins")


def tls_client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Conn:
    """A line-oriented client; reads byte by byte so nothing past a line is consumed."""

    def __init__(self, port, timeout=10.0, implicit_tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_tls:
            self.sock = tls_client_context().wrap_socket(self.sock, server_hostname="mx.example.test")

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        buf = b""
        while not buf.endswith(b"\r\n"):
            c = self.sock.recv(1)
            if not c:
                raise EOFError("connection closed after %r" % buf)
            buf += c
        return buf[:-2].decode()

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def starttls(self):
        self.sock = tls_client_context().wrap_socket(self.sock, server_hostname="mx.example.test")

    def closed_by_server(self, timeout=10.0):
        """True when the server closes the connection within `timeout` (no more data)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class ServiceTestBase(unittest.TestCase):
    LISTENERS = [
        {"name": "echo", "protocol": "echo", "tls": "none"},
        {"name": "echo-tls", "protocol": "echo", "tls": "starttls", "cleartext-auth": "true"},
        {"name": "echos", "protocol": "echo", "tls": "implicit"},
    ]
    PLUGINS = [("echo_service", "", {"protocol": "echo"})]

    def start_daemon(self, listeners=None, plugins=None):
        d = Daemon(listeners=listeners if listeners is not None else self.LISTENERS,
                   plugins=plugins if plugins is not None else self.PLUGINS, plugin_dirs=[ABI_PLUGIN_DIR])
        d.start()
        self.addCleanup(d.stop)
        self.assertTrue(wait_for(lambda: "posternd started" in d.log()), d.log())
        return d

    def closes(self, d):
        path = os.path.join(d.data_dir, "state", "echo_service", "closes.log")
        try:
            with open(path) as f:
                return [l.split() for l in f.read().splitlines()]
        except OSError:
            return []

    def close_reason(self, d, session, timeout=10.0):
        found = []

        def seen():
            found[:] = [r for s, r in self.closes(d) if s == session]
            return bool(found)

        self.assertTrue(wait_for(seen, timeout), "no close recorded for %s:\n%s" % (session, d.log()))
        return found[0]


class ServiceEchoTest(ServiceTestBase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(listeners=cls.LISTENERS, plugins=cls.PLUGINS, plugin_dirs=[ABI_PLUGIN_DIR])
        cls.d.start()
        if not wait_for(lambda: "posternd started" in cls.d.log()):
            cls.d.stop()
            raise RuntimeError(cls.d.log())

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def hello(self, conn):
        greeting = conn.line()
        self.assertTrue(greeting.startswith("HELLO "), greeting)
        return greeting.split()[1]

    def props(self, conn):
        conn.send("PROPS\r\n")
        out = {}
        while True:
            l = conn.line()
            if l == "OK props":
                return out
            self.assertTrue(l.startswith("PROP "), l)
            k, _, v = l[5:].partition("=")
            out[k] = v

    def test_echoes_lines_split_and_pipelined(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        self.hello(c)
        self.assertEqual(c.cmd("hello world"), "ECHO hello world")
        c.send("one\r\ntw")
        self.assertEqual(c.line(), "ECHO one")
        c.send("o\r\n")
        self.assertEqual(c.line(), "ECHO two")

    def test_properties_describe_the_connection(self):
        c1 = Conn(self.d.port("echo"))
        c2 = Conn(self.d.port("echo-tls"))
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        s1, s2 = self.hello(c1), self.hello(c2)
        self.assertNotEqual(s1, s2)
        p = self.props(c1)
        self.assertEqual(p["session"], s1)
        self.assertEqual(p["peer-ip"], "127.0.0.1")
        self.assertEqual(int(p["peer-port"]), c1.sock.getsockname()[1])
        self.assertEqual(p["local-ip"], "127.0.0.1")
        self.assertEqual(int(p["local-port"]), self.d.port("echo"))
        self.assertEqual(p["listener"], "echo")
        self.assertEqual(p["protocol"], "echo")
        self.assertEqual(p["tls-mode"], "none")
        self.assertEqual(p["tls-protocol"], "")
        self.assertEqual(p["server-name"], "mx.example.test")
        self.assertEqual(p["cleartext-auth"], "0")
        p2 = self.props(c2)
        self.assertEqual(p2["tls-mode"], "starttls")
        self.assertEqual(p2["cleartext-auth"], "1")

    def test_starttls_drops_input_pipelined_after_the_command(self):
        c = Conn(self.d.port("echo-tls"))
        self.addCleanup(c.close)
        self.hello(c)
        # RFC 3207 §4.2 / RFC 2595: one packet with a command after STARTTLS.
        c.send("STARTTLS\r\nINJECTED\r\n")
        self.assertEqual(c.line(), "OK go")
        c.starttls()
        self.assertTrue(c.line().startswith("OK tls TLSv1."))
        self.assertEqual(c.cmd("HISTORY"), "HISTORY STARTTLS|HISTORY")
        p = self.props(c)
        self.assertTrue(p["tls-protocol"].startswith("TLSv1."), p)
        self.assertNotEqual(p["tls-cipher"], "")
        self.assertEqual(c.cmd("after tls"), "ECHO after tls")

    def test_plaintext_sent_after_the_go_ahead_fails_the_handshake(self):
        c = Conn(self.d.port("echo-tls"))
        self.addCleanup(c.close)
        session = self.hello(c)
        c.send("STARTTLS\r\n")
        self.assertEqual(c.line(), "OK go")
        # Not delivered as a command: the host stopped reading; the octets
        # reach the TLS handshake, which fails.
        c.send("INJECTED\r\n")
        with self.assertRaises((ssl.SSLError, OSError, EOFError)):
            c.starttls()
            c.cmd("HISTORY")
        self.assertEqual(self.close_reason(self.d, session), "tls-failed")

    def test_starttls_refused_on_a_listener_without_tls(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        self.hello(c)
        c.send("STARTTLS\r\n")
        self.assertEqual(c.line(), "OK go")
        self.assertEqual(c.line(), "NO tls unavailable")

    def test_implicit_tls(self):
        c = Conn(self.d.port("echos"), implicit_tls=True)
        self.addCleanup(c.close)
        self.hello(c)
        p = self.props(c)
        self.assertEqual(p["tls-mode"], "implicit")
        self.assertTrue(p["tls-protocol"].startswith("TLSv1."), p)
        self.assertEqual(c.cmd("over tls"), "ECHO over tls")
        # Second STARTTLS on a TLS stream is refused.
        c.send("STARTTLS\r\n")
        self.assertEqual(c.line(), "OK go")
        self.assertEqual(c.line(), "NO tls unavailable")

    def test_plugin_close_over_tls_sends_close_notify(self):
        raw = socket.create_connection(("127.0.0.1", self.d.port("echos")), timeout=10)
        c = Conn.__new__(Conn)
        # RFC 8446 §6.1: a ragged EOF would raise here instead of returning b"".
        c.sock = tls_client_context().wrap_socket(raw, server_hostname="mx.example.test", suppress_ragged_eofs=False)
        self.addCleanup(c.close)
        session = self.hello(c)
        self.assertEqual(c.cmd("CLOSE"), "BYE")
        self.assertEqual(c.sock.recv(1), b"")
        self.assertEqual(self.close_reason(self.d, session), "plugin")

    def test_implicit_tls_handshake_failure_never_opens(self):
        c = Conn(self.d.port("echos"))
        self.addCleanup(c.close)
        c.send("GARBAGE NOT TLS\r\n")
        self.assertTrue(c.closed_by_server())

    def test_pause_holds_input_until_resumed(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        self.hello(c)
        t0 = time.monotonic()
        c.send("PAUSE 400\r\nafter\r\n")
        self.assertEqual(c.line(), "OK paused")
        # "after" came in the same packet: the plugin keeps it; a later line
        # stays in the kernel until the stream resumes.
        c.send("later\r\n")
        self.assertEqual(c.line(), "ECHO after")
        self.assertEqual(c.line(), "OK resumed")
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        self.assertEqual(c.line(), "ECHO later")

    def test_work_on_the_pool_answers_through_post(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        self.hello(c)
        self.assertEqual(c.cmd("WORK"), "OK worked")
        self.assertEqual(c.cmd("still here"), "ECHO still here")

    def test_drain_and_large_output(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        self.hello(c)
        n = 4 * 1024 * 1024
        c.send("BIG %d\r\nDRAIN\r\n" % n)
        got = b""
        while len(got) < n + 2:
            chunk = c.sock.recv(1 << 16)
            self.assertTrue(chunk)
            got += chunk
        self.assertEqual(got[:n + 2], b"x" * n + b"\r\n")
        rest = got[n + 2:]
        while rest.count(b"\r\n") < 2:
            rest += c.sock.recv(4096)
        lines = rest.decode().split("\r\n")
        self.assertTrue(lines[0].startswith("OK big queued="), lines)
        self.assertGreater(int(lines[0].split("=")[1]), 0)
        self.assertEqual(lines[1], "OK drained")

    def test_plugin_close_flushes_then_closes(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        session = self.hello(c)
        self.assertEqual(c.cmd("CLOSE"), "BYE")
        self.assertTrue(c.closed_by_server())
        self.assertEqual(self.close_reason(self.d, session), "plugin")

    def test_peer_close_is_reported(self):
        c = Conn(self.d.port("echo"))
        session = self.hello(c)
        c.close()
        self.assertEqual(self.close_reason(self.d, session), "peer")

    def test_plugin_sets_idle_timeout(self):
        c = Conn(self.d.port("echo"))
        self.addCleanup(c.close)
        session = self.hello(c)
        self.assertEqual(c.cmd("IDLE 300"), "OK idle")
        t0 = time.monotonic()
        self.assertTrue(c.closed_by_server(5))
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(self.close_reason(self.d, session), "timeout")


class ServiceListenerTest(ServiceTestBase):
    def test_listener_idle_timeout_not_counted_while_paused(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo", "idle-timeout": "1s"}])
        c = Conn(d.port("echo"))
        self.addCleanup(c.close)
        session = c.line().split()[1]
        c.send("PAUSE 1800\r\n")
        self.assertEqual(c.line(), "OK paused")
        self.assertEqual(c.line(), "OK resumed")  # 1.8 s paused: longer than the idle timeout
        t0 = time.monotonic()
        self.assertTrue(c.closed_by_server(5))
        self.assertGreater(time.monotonic() - t0, 0.7)
        self.assertEqual(self.close_reason(d, session), "timeout")

    def test_port_not_opened_when_the_plugin_is_disabled(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo"}],
                              plugins=[("echo_service", "", {"protocol": "echo", "enabled": "false"})])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port("echo")), timeout=2).close()
        self.assertIn("no loaded plugin serves this protocol", d.log())

    def test_port_not_opened_without_a_plugin(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo"}], plugins=[])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port("echo")), timeout=2).close()
        self.assertIn("no loaded plugin serves this protocol", d.log())

    def test_port_not_opened_when_the_plugin_serves_another_protocol(self):
        d = self.start_daemon(listeners=[{"name": "pop", "protocol": "pop3"}])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port("pop")), timeout=2).close()

    def test_connection_limit(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo", "max-connections": "3"}])
        conns = [Conn(d.port("echo")) for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertTrue(c.line().startswith("HELLO "))
        extra = Conn(d.port("echo"))
        self.addCleanup(extra.close)
        self.assertTrue(extra.closed_by_server())
        self.assertIn("max-connections", d.log())
        conns[0].close()
        self.assertTrue(wait_for(lambda: len(self.closes(d)) == 1))
        again = Conn(d.port("echo"))
        self.addCleanup(again.close)
        self.assertTrue(again.line().startswith("HELLO "))

    def test_bad_listener_attribute_refuses_to_start(self):
        d = Daemon(listeners=[{"name": "echo", "protocol": "echo", "max-connections": "lots"}],
                   plugins=self.PLUGINS, plugin_dirs=[ABI_PLUGIN_DIR])
        self.addCleanup(d.stop)
        d.start()
        self.assertTrue(wait_for(lambda: d.proc.poll() is not None, 10), d.log())
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn("max-connections", d.log())

    def test_reload_without_the_plugin_closes_new_connections(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo"}])
        old = Conn(d.port("echo"))
        self.addCleanup(old.close)
        self.assertTrue(old.line().startswith("HELLO "))
        d.plugins = []
        with open(d.config_path, "w") as f:
            f.write(d.manifest())
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reloaded" in d.log()), d.log())
        new = Conn(d.port("echo"))
        self.addCleanup(new.close)
        self.assertTrue(new.closed_by_server())
        self.assertIn("no plugin of the current configuration serves protocol echo", d.log())
        # The connection from before keeps its plugin.
        self.assertEqual(old.cmd("still"), "ECHO still")

    def test_many_connections_killed_at_once(self):
        d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo"}])
        conns = []
        for i in range(300):
            c = Conn(d.port("echo"))
            conns.append(c)
        for c in conns:
            self.assertTrue(c.line().startswith("HELLO "))
        for i, c in enumerate(conns):
            if i % 3 == 0:
                c.send("PAUSE 200\r\n")  # some are paused when killed
            if i % 2 == 0:
                # RST instead of FIN.
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
        self.assertTrue(wait_for(lambda: len(self.closes(d)) == 300, 20), "%d closes" % len(self.closes(d)))
        reasons = {r for _, r in self.closes(d)}
        self.assertTrue(reasons <= {"peer", "error"}, reasons)
        c = Conn(d.port("echo"))
        self.addCleanup(c.close)
        c.line()
        self.assertEqual(c.cmd("alive"), "ECHO alive")
        self.assertIsNone(d.proc.poll())

    def test_stop_with_connections_open(self):
        d = self.start_daemon()
        conns = [Conn(d.port("echo")) for _ in range(20)] + [Conn(d.port("echos"), implicit_tls=True)]
        for i, c in enumerate(conns):
            self.addCleanup(c.close)
            self.assertTrue(c.line().startswith("HELLO "))
            if i % 4 == 0:
                c.send("PAUSE 60000\r\n")
                self.assertEqual(c.line(), "OK paused")
        t0 = time.monotonic()
        rc = d.stop()
        self.assertLess(time.monotonic() - t0, 8)
        self.assertEqual(rc, 0)
        # stop() removed the directory; the closes were recorded before.


class ServiceShutdownRecordTest(ServiceTestBase):
    def test_streams_get_shutdown_before_the_plugin_goes(self):
        os.environ["POSTERN_KEEP_TMP"] = "1"
        try:
            d = self.start_daemon(listeners=[{"name": "echo", "protocol": "echo"}])
            conns = [Conn(d.port("echo")) for _ in range(5)]
            for c in conns:
                self.addCleanup(c.close)
                c.line()
            self.assertEqual(d.stop(), 0)
        finally:
            del os.environ["POSTERN_KEEP_TMP"]
        self.addCleanup(lambda: __import__("shutil").rmtree(d.dir, ignore_errors=True))
        self.assertEqual(sorted(r for _, r in self.closes(d)), ["shutdown"] * 5)
        self.assertIn("posternd stopped", d.log())
        for c in conns:
            self.assertTrue(c.closed_by_server(2))


if __name__ == "__main__":
    unittest.main()
