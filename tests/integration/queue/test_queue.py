"""Queue manager end to end: the real posternd relaying to a real smtp-sink
(package postfix) through <delivery><route>, posternctl queue, a DSN, and the
kill -9 crash test (issue 4, docs/queue.md)."""

import email
import json
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import BIN_DIR, Daemon, free_port  # noqa: E402

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """smtp-sink writing every message to a file in `dir` (-d), with optional fault injection args."""

    def __init__(self, *fault_args):
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        self.port = free_port()
        self.proc = subprocess.Popen([SINK, "-u", "root", "-d", os.path.join(self.dir, "%M."), *fault_args,
                                      "127.0.0.1:%d" % self.port, "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def messages(self):
        out = []
        for root, _, files in os.walk(self.dir):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(fh.read())
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def queue_xml(port, extra=""):
    return ('<queue retry="1h" delay-warning="0" destination-backoff="0"/>'
            '<delivery><route match="*@sink.test" to="[127.0.0.1:%d]"/>%s</delivery>' % (port, extra))


class QueueTest(unittest.TestCase):
    def start(self, sink, **kw):
        d = Daemon(smtp_xml="<local-domain>example.test</local-domain><relay-domain>sink.test</relay-domain>",
                   extra_xml=queue_xml(sink.port), **kw)
        d.start()
        self.addCleanup(d.stop)
        return d

    def ctl(self, d, *args):
        return subprocess.run([os.path.join(BIN_DIR, "posternctl"), "--config", d.config_path, "queue", *args],
                              capture_output=True, text=True, timeout=30)

    def send(self, d, rcpts, sender="alice@example.test", body="hello"):
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as s:
            s.sendmail(sender, rcpts, "Subject: t\r\nMessage-ID: <%s@x>\r\n\r\n%s\r\n" % (random.random(), body))

    def wait(self, pred, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if pred():
                return True
            time.sleep(0.1)
        return pred()

    def test_relays_to_the_sink_and_empties_the_queue(self):
        sink = Sink()
        self.addCleanup(sink.stop)
        d = self.start(sink)
        self.send(d, ["bob@sink.test", "carol@sink.test"])
        self.assertTrue(self.wait(lambda: len(sink.messages()) == 1), d.log())
        self.assertTrue(self.wait(lambda: not d.spool_messages()), d.log())
        self.assertIn(b"hello", sink.messages()[0])

    def test_tempfail_then_flush_delivers_and_ctl_tools_work(self):
        # The sink answers 450 to every RCPT until it is restarted without the fault.
        sink = Sink("-r", "rcpt")  # 4xx soft reject at RCPT
        d = self.start(sink)
        self.send(d, ["bob@sink.test"])
        self.assertTrue(self.wait(lambda: os.listdir(os.path.join(d.data_dir, "queue", "state"))), d.log())
        listing = json.loads(self.ctl(d, "list", "--json").stdout)
        self.assertEqual(len(listing), 1)
        qid = listing[0]["id"]
        self.assertTrue(listing[0]["last_error"].startswith("4"), listing)
        self.assertEqual(self.ctl(d, "show", "nonexistent").returncode, 3)
        self.assertEqual(self.ctl(d, "hold", qid).returncode, 0)
        self.assertTrue(os.path.exists(os.path.join(d.data_dir, "queue", "hold", qid)))
        self.assertIn("!", self.ctl(d, "list").stdout)
        self.assertEqual(self.ctl(d, "release", qid).returncode, 0)
        # Repair the destination, flush: delivered without waiting an hour.
        sink.stop()
        good = Sink.__new__(Sink)
        good.dir = tempfile.mkdtemp(prefix="postern-sink-")
        good.port = sink.port
        good.proc = subprocess.Popen([SINK, "-u", "root", "-d", os.path.join(good.dir, "%M."),
                                      "127.0.0.1:%d" % good.port, "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(good.stop)
        time.sleep(0.3)
        r = self.ctl(d, "flush")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.assertTrue(self.wait(lambda: len(good.messages()) == 1), d.log())
        self.assertTrue(self.wait(lambda: self.ctl(d, "list").stdout.startswith("Mail queue is empty")), d.log())

    def test_permanent_failure_produces_a_dsn(self):
        sink = Sink("-f", "rcpt")  # 5xx hard reject at RCPT
        self.addCleanup(sink.stop)
        d = self.start(sink)
        self.send(d, ["bob@sink.test"], sender="alice@example.test")
        # alice@example.test is local without a directory: the DSN stays queued; check its structure.
        def dsn():
            return [m for m in d.spool_messages() if m.get("origin") == "dsn"]
        self.assertTrue(self.wait(lambda: dsn()), d.log())
        m = dsn()[0]
        self.assertEqual(m["mail_from"], "")
        self.assertEqual(m["rcpts"][0]["address"], "alice@example.test")
        msg = email.message_from_bytes(m["message"])
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        parts = msg.get_payload()
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        status = parts[1].as_string()
        self.assertIn("Action: failed", status)
        self.assertIn("Final-Recipient: rfc822; bob@sink.test", status)
        self.assertRegex(status, r"Status: 5\.\d+\.\d+")

    def test_crash_loses_nothing(self):
        sink = Sink()
        self.addCleanup(sink.stop)
        d = self.start(sink)
        n = 300
        accepted = []
        stop_at = random.randint(50, 250)

        def sender():
            for i in range(n):
                try:
                    with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=5) as s:
                        s.sendmail("alice@example.test", ["u%d@sink.test" % i],
                                   "Subject: crash %d\r\nX-Seq: crash-%d\r\n\r\nbody %d\r\n" % (i, i, i))
                        accepted.append(i)
                except (OSError, smtplib.SMTPException):
                    pass
        t = threading.Thread(target=sender)
        t.start()
        while len(accepted) < stop_at and t.is_alive():
            time.sleep(0.01)
        d.kill()
        t.join()
        d.start()
        self.assertTrue(self.wait(lambda: not d.spool_messages(), timeout=60), d.log()[-3000:])
        seen = {}
        for m in sink.messages():
            for x in re.findall(rb"X-Seq: crash-(\d+)", m):
                seen[int(x)] = seen.get(int(x), 0) + 1
        lost = [i for i in accepted if i not in seen]
        dups = sum(c - 1 for c in seen.values())
        print("crash test: accepted=%d delivered=%d duplicates=%d" % (len(accepted), len(seen), dups))
        self.assertEqual(lost, [])


if __name__ == "__main__":
    unittest.main()
