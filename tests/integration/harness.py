"""Integration-test harness: runs the REAL posternd on loopback.

    from harness import Daemon, hash_password

    class MyTest(unittest.TestCase):
        def setUp(self):
            self.d = Daemon(smtp_xml='<local-domain>example.test</local-domain>')
            self.d.start()
            self.addCleanup(self.d.stop)

        def test_x(self):
            port = self.d.port("smtp")           # listener name -> port
            ...
            msgs = self.d.spool_messages()       # parsed spool files

Environment: POSTERN_BIN_DIR (build/bin), POSTERN_BINARY_DIR, POSTERN_SOURCE_DIR
(set by CTest; defaults relative to this file). Only the Python standard library.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from xml.sax.saxutils import quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("POSTERN_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BINARY_DIR = os.environ.get("POSTERN_BINARY_DIR", os.path.join(SOURCE_DIR, "build"))
BIN_DIR = os.environ.get("POSTERN_BIN_DIR", os.path.join(BINARY_DIR, "bin"))


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hash_password(password, iterations=1000, salt=None):
    """The <account password-hash=...> format (docs/smtp.md): $pbkdf2-sha512$N$salt$key."""
    salt = salt or os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$pbkdf2-sha512$%d$%s$%s" % (iterations, salt.hex(), key.hex())


def parse_spool_file(path):
    """Reads one spool file (docs/spool.md) into a dict:
    {'path', 'queue_id', 'mail_from', 'rcpts': [{'address','notify','orcpt'}], 'envid', 'ret',
     'body', 'smtputf8', 'peer', 'helo', 'auth_user', 'received_at', 'size', 'message' (bytes)}."""
    with open(path, "rb") as f:
        data = f.read()
    head, sep, message = data.partition(b"\n\n")
    if not sep:
        raise ValueError("no envelope separator in %s" % path)
    lines = head.decode("utf-8", "replace").split("\n")
    if lines[0] != "postern-spool 1":
        raise ValueError("bad magic in %s" % path)
    out = {"path": path, "rcpts": [], "message": message}
    for line in lines[1:]:
        key, _, value = line.partition(": ")
        if key == "rcpt":
            o = value.rfind(" orcpt=")
            n = value.rfind(" notify=", 0, o)
            out["rcpts"].append({"address": value[:n].strip("<>"), "notify": value[n + 8:o], "orcpt": value[o + 7:]})
        elif key == "mail-from":
            out["mail_from"] = value[1:-1]
        elif key in ("received-at", "size"):
            out[key.replace("-", "_")] = int(value or 0)
        elif key == "smtputf8":
            out["smtputf8"] = value == "yes"
        else:
            out[key.replace("-", "_")] = value
    if out.get("size") != len(message):
        raise ValueError("size mismatch in %s" % path)
    return out


class Daemon:
    """A posternd with its own manifest, data dir and loopback ports.

    listeners: list of dicts {name, protocol, tls, ...extra attributes}; ports are
      allocated automatically. Default: smtp (starttls), submission (starttls,
      require-auth), smtps (submission over implicit TLS).
    smtp_xml: inner XML of <smtp ...>; smtp_attrs: its attributes (dict).
    plugins: list of (name, config_xml_inside_plugin_element) or (name, xml, attrs dict).
    plugin_dirs: directories searched for plugins (default: build/plugins).
    extra_xml: appended inside <postern>.
    deliver: whether the queue manager delivers; default: only when extra_xml
        has <queue> or <delivery> (otherwise <queue deliver="false"/> is added).
    """

    DEFAULT_LISTENERS = [
        {"name": "smtp", "protocol": "smtp", "tls": "starttls"},
        {"name": "submission", "protocol": "submission", "tls": "starttls", "require-auth": "true"},
        {"name": "smtps", "protocol": "submission", "tls": "implicit", "require-auth": "true"},
    ]

    def __init__(self, smtp_xml="", smtp_attrs=None, listeners=None, plugins=(), plugin_dirs=None,
                 server_name="mx.example.test", extra_xml="", log_level="debug", binary=None, deliver=None):
        self.dir = tempfile.mkdtemp(prefix="postern-it-")
        self.data_dir = os.path.join(self.dir, "var")
        self.config_path = os.path.join(self.dir, "postern.xml")
        self.log_path = os.path.join(self.dir, "posternd.log")
        self.server_name = server_name
        self.binary = binary or os.path.join(BIN_DIR, "posternd")
        self.listeners = [dict(l) for l in (listeners if listeners is not None else self.DEFAULT_LISTENERS)]
        for l in self.listeners:
            l.setdefault("port", str(free_port()))
            l.setdefault("address", "127.0.0.1")
        self.smtp_xml = smtp_xml
        self.smtp_attrs = dict(smtp_attrs or {})
        self.plugins = list(plugins)
        self.plugin_dirs = plugin_dirs if plugin_dirs is not None else [os.path.join(BINARY_DIR, "plugins")]
        # Tests of the receiving side inspect the spool: the queue manager must
        # not deliver (and bounce) their messages under them. Deliveries are on
        # when asked for, or when the test configures <queue> or <delivery>.
        if deliver is None:
            deliver = "<queue" in extra_xml or "<delivery" in extra_xml
        if not deliver and "<queue" not in extra_xml:
            extra_xml = '<queue deliver="false"/>' + extra_xml
        self.extra_xml = extra_xml
        self.log_level = log_level
        self.proc = None
        self._log_file = None

    # -- manifest -----------------------------------------------------------
    def manifest(self):
        def attrs(d):
            return "".join(" %s=%s" % (k, quoteattr(str(v))) for k, v in d.items())

        listeners = "\n".join("    <listener%s/>" % attrs(l) for l in self.listeners)
        plugins = []
        for p in self.plugins:
            name, xml = p[0], p[1]
            extra = p[2] if len(p) > 2 else {}
            plugins.append("    <plugin name=%s%s>%s</plugin>" % (quoteattr(name), attrs(extra), xml))
        dirs = "".join("<dir>%s</dir>" % d for d in self.plugin_dirs)
        return """<?xml version="1.0"?>
<postern>
  <server name={name} data-dir={data}/>
  <log level={level}/>
  <plugin-dirs>{dirs}</plugin-dirs>
  <certificate cert={cert} key={key} generate="true"/>
  <listeners>
{listeners}
  </listeners>
  <smtp{smtp_attrs}>{smtp_xml}</smtp>
  <plugins>
{plugins}
  </plugins>
{extra}
</postern>
""".format(name=quoteattr(self.server_name), data=quoteattr(self.data_dir), level=quoteattr(self.log_level),
           dirs=dirs, cert=quoteattr(os.path.join(self.dir, "tls", "cert.pem")),
           key=quoteattr(os.path.join(self.dir, "tls", "key.pem")), listeners=listeners,
           smtp_attrs=attrs(self.smtp_attrs), smtp_xml=self.smtp_xml, plugins="\n".join(plugins),
           extra=self.extra_xml)

    # -- process ------------------------------------------------------------
    def start(self, timeout=20.0):
        """Writes the manifest, starts posternd --foreground, waits until every
        smtp/submission port accepts. Raises RuntimeError with the log on failure."""
        with open(self.config_path, "w") as f:
            f.write(self.manifest())
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path, "--foreground"],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        pending = [(l.get("address", "127.0.0.1").strip("[]"), int(l["port"])) for l in self.listeners
                   if l.get("protocol") in ("smtp", "submission") and l.get("enabled", "true") == "true"]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError("posternd exited with %s:\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("posternd did not open its ports in %ss:\n%s" % (timeout, self.log()))
            try:
                with socket.create_connection(pending[0], timeout=0.5):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return self

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`; removes the temp dir unless POSTERN_KEEP_TMP is set.
        Returns posternd's exit status (None if it was not running)."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if not os.environ.get("POSTERN_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def kill(self):
        """SIGKILL without cleanup (crash tests); start() may be called again."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def port(self, listener="smtp"):
        for l in self.listeners:
            if l["name"] == listener:
                return int(l["port"])
        raise KeyError(listener)

    # -- spool --------------------------------------------------------------
    def spool_dir(self, subdir="incoming"):
        return os.path.join(self.data_dir, "queue", subdir)

    def spool_messages(self, subdir="incoming"):
        """Every spooled message (parsed, see parse_spool_file), oldest queue id first."""
        d = self.spool_dir(subdir)
        if not os.path.isdir(d):
            return []
        return [parse_spool_file(os.path.join(d, n)) for n in sorted(os.listdir(d))]

    def wait_for_messages(self, count, subdir="incoming", timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.spool_messages(subdir)
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
