#!/usr/bin/env bash
# Checks the README's demo command as a user would run it: starts scripts/run-demo.sh,
# waits for SMTP on 2525, IMAP on 2143 and POP3 on 2110, sends one message to the demo
# account with smtplib and reads it back over IMAP (STARTTLS) and POP3 (STLS), then
# stops the demo by its PID. .ci/run calls it in a fresh Debian 12 root after the tests.
# Leaves var/ as the demo made it. POSTERN_DEMO_WAIT: seconds to wait for the
# listeners once posternd runs (default 120); the build before it has no limit.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/postern-demo.XXXXXX.log)
setsid scripts/run-demo.sh >"$log" 2>&1 &
pid=$!
stop() {
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
trap stop EXIT

python3 - "$pid" "${POSTERN_DEMO_WAIT:-120}" <<'EOF' || { echo "check-demo: FAILED; run-demo.sh said:" >&2; tail -40 "$log" >&2; exit 1; }
import imaplib, os, poplib, smtplib, socket, ssl, sys, time

pid, wait = int(sys.argv[1]), float(sys.argv[2])
ports = {"SMTP": (2525, b"220 "), "IMAP": (2143, b"* OK"), "POP3": (2110, b"+OK")}

def banner(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(512)

# run-demo.sh builds first (nothing to do after scripts/test.sh), then starts posternd.
deadline = None
while True:
    os.kill(pid, 0)  # run-demo.sh died: ProcessLookupError ends the check
    # run-demo.sh execs posternd in the same process once the build is done.
    if deadline is None:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "posternd":
                    deadline = time.time() + wait
        except OSError:
            pass
    try:
        got = {name: banner(port) for name, (port, _) in ports.items()}
        break
    except OSError:
        if deadline is not None and time.time() > deadline:
            sys.exit("check-demo: the demo did not open 2525, 2143 and 2110")
        time.sleep(0.5)
for name, (port, want) in ports.items():
    if not got[name].startswith(want):
        sys.exit(f"check-demo: {name} on {port} greeted {got[name]!r}")
    print(f"check-demo: {name} on {port}: {got[name].decode(errors='replace').strip()}")

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
subject = f"check-demo {time.time_ns()}"
with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as smtp:
    smtp.starttls(context=ctx)
    smtp.sendmail("someone@example.org", ["demo@postern.test"],
                  f"From: someone@example.org\r\nTo: demo@postern.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
print("check-demo: SMTP accepted a message for demo@postern.test")

found = False
for _ in range(100):  # delivery to the mailbox store follows the 250 closely
    imap = imaplib.IMAP4("127.0.0.1", 2143, timeout=30)
    imap.starttls(ssl_context=ctx)
    imap.login("demo@postern.test", "demo-password")
    imap.select("INBOX", readonly=True)
    typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
    imap.logout()
    if typ == "OK" and data[0].split():
        found = True
        break
    time.sleep(0.2)
if not found:
    sys.exit("check-demo: the message never reached the demo INBOX over IMAP")
print("check-demo: IMAP (STARTTLS) shows it in INBOX")

pop = poplib.POP3("127.0.0.1", 2110, timeout=30)
pop.stls(context=ctx)
pop.user("demo@postern.test")
pop.pass_("demo-password")
count, _ = pop.stat()
pop.quit()
if count < 1:
    sys.exit("check-demo: POP3 shows an empty maildrop")
print(f"check-demo: POP3 (STLS) shows {count} message(s)")
EOF
echo "check-demo: the demo works"
