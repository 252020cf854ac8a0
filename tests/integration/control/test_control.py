"""The control plane end to end (docs/control-plane.md): posternctl talks to
the real posternd over its control socket; a directory change made with
posternctl is in force when the command returns; a plugin's area (greylist)
is served by the plugin; without the daemon core areas still work and a
plugin area says that posternd must run."""

import json
import os
import smtplib
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon  # noqa: E402

POSTERNCTL = os.path.join(BIN_DIR, "posternctl")
SMTP_XML = "<local-domain>example.test</local-domain>"
SMTP_ATTRS = {"tarpit-delay": "0", "min-free-disk": "0"}
DIRECTORY_XML = '<directory hash-time="1" hash-memory="1M"/>'
# Loopback is excepted: the RCPTs of this test must not be greylisted.
GREYLIST = ("greylist", '<except ip="127.0.0.1"/>', {"delay": "2s", "window": "1h"})


class ControlPlaneTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, extra_xml=DIRECTORY_XML, plugins=[GREYLIST])
        cls.d.start()
        cls.socket_path = os.path.join(cls.d.data_dir, "posternd.sock")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def ctl(self, *args, stdin=None):
        p = subprocess.run([POSTERNCTL, "--config", self.d.config_path] + list(args), input=stdin,
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def raw(self, payload):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.socket_path)
            s.sendall(payload)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data.decode())

    def rcpt(self, address):
        with smtplib.SMTP("127.0.0.1", self.d.port(), timeout=10) as s:
            s.ehlo("client.example")
            s.mail("sender@example.org")
            return s.rcpt(address)

    def test_socket_is_owner_only(self):
        st = os.stat(self.socket_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def test_an_alias_added_with_posternctl_is_in_force_when_it_returns(self):
        rc, out, err = self.ctl("user", "add", "alice@example.test", "--password-stdin", stdin="alice-pw\n")
        self.assertEqual(rc, 0, err)
        for i in range(5):
            alias = "fresh%d@example.test" % i
            self.assertEqual(self.rcpt(alias)[0], 550)
            rc, out, err = self.ctl("alias", "add", alias, "alice@example.test")
            self.assertEqual((rc, out.strip()), (0, "alias %s -> alice@example.test" % alias), err)
            # No sleep: the daemon made the change on its own directory before answering.
            self.assertEqual(self.rcpt(alias)[0], 250)
        rc, _, _ = self.ctl("alias", "del", "fresh0@example.test")
        self.assertEqual(rc, 0)
        self.assertEqual(self.rcpt("fresh0@example.test")[0], 550)

    def test_exit_codes_and_json_come_through_the_daemon(self):
        self.assertEqual(self.ctl("user", "show", "ghost@example.test")[0], 3)
        self.assertEqual(self.ctl("domain", "add", "example.test")[0], 4)
        rc, _, err = self.ctl("user", "add", "not an address")
        self.assertEqual(rc, 2)
        self.assertIn("not a valid address", err)
        domains = json.loads(self.ctl("domain", "list", "--json")[1])
        self.assertIn("example.test", [d["name"] for d in domains])
        rc, _, err = self.ctl("nosuch", "thing")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'nosuch thing'", err)

    def test_help_lists_core_and_plugin_commands(self):
        rc, out, err = self.ctl("help", "--json")
        self.assertEqual(rc, 0, err)
        commands = {c["command"]: c for c in json.loads(out)}
        self.assertEqual(commands["greylist allow"]["owner"], "greylist")
        self.assertEqual(commands["greylist allow"]["args"][0]["name"], "network")
        self.assertEqual(commands["alias add"]["owner"], "core")
        rc, out, _ = self.ctl("help", "greylist")
        self.assertIn("greylist flush [--expired] [--all]", out)

    def test_plugin_command_through_the_socket_with_typed_arguments(self):
        reply = self.raw(b'{"id":"a1","command":"greylist allow","args":{"network":"192.0.2.9/24"},"format":"json"}\n')
        self.assertEqual(reply["id"], "a1")
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(reply["result"], {"allowed": "192.0.2.0/24"})
        reply = self.raw(b'{"command":"greylist allow","args":{"network":42}}\n')
        self.assertEqual((reply["status"], reply["exit"]), ("usage", 2))
        self.assertIn("must be a string", reply["error"])

    def test_malformed_and_unknown_requests_get_clear_errors(self):
        reply = self.raw(b"this is not json\n")
        self.assertEqual(reply["status"], "usage")
        self.assertIn("malformed request", reply["error"])
        reply = self.raw(b'{"command":"bayes train"}\n')
        self.assertEqual(reply["error"], "unknown command 'bayes train' (help lists the commands)")


class OfflineTest(unittest.TestCase):
    def test_core_areas_work_offline_and_plugin_areas_say_the_daemon_must_run(self):
        d = Daemon(smtp_xml=SMTP_XML, smtp_attrs=SMTP_ATTRS, extra_xml=DIRECTORY_XML, plugins=[GREYLIST])
        try:
            with open(d.config_path, "w") as f:
                f.write(d.manifest())
            run = lambda *a: subprocess.run([POSTERNCTL, "--config", d.config_path] + list(a),  # noqa: E731
                                            capture_output=True, text=True, timeout=60)
            p = run("domain", "list")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("example.test", p.stdout)
            p = run("greylist", "list")
            self.assertEqual(p.returncode, 1)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertIn("posternd must run", p.stderr)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
