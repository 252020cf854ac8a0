#!/usr/bin/env bash
# End-to-end relay benchmark (issue 4): smtp-source -> server -> smtp-sink, for
# posternd and a private stock Postfix in the same run. Reports msg/s from the
# first 250 to the last delivery at the sink, the ratio, and the latency from
# the server's 250 to the sink's 250 (p50, p99). Method: bench/queue/README.md.
#
# Usage: bench/queue/run.sh [BUILD_DIR]        (or BUILD_DIR=...; default build/)
# Environment (defaults in brackets):
#   MESSAGES [5000]  SESSIONS [10]  RCPTS [1] recipients per message  SIZE [1024] bytes
#   REUSE [0]        1 = smtp-source -d (keep the connection for the next message)
#   ORDER ["posternd postfix postfix posternd"]  runs, in this order; best run per system counts
#   TIMEOUT [300]    seconds to wait for the last delivery of one run
#   KEEP_TMP [0]     1 = keep the temp dir (logs, pcaps, sink files)
#   SINK_ARGS [""]   extra smtp-sink options, e.g. "-W data:50:10" (slow peer) or "-r rcpt" (4xx)
# Needs root (Postfix, tcpdump on lo), packages postfix (smtp-source, smtp-sink,
# the reference server), tcpdump and /usr/bin/python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BUILD_DIR="$(cd "${1:-${BUILD_DIR:-$root/build}}" && pwd)"
MESSAGES="${MESSAGES:-5000}"
SESSIONS="${SESSIONS:-10}"
RCPTS="${RCPTS:-1}"
SIZE="${SIZE:-1024}"
REUSE="${REUSE:-0}"
ORDER="${ORDER:-posternd postfix postfix posternd}"
TIMEOUT="${TIMEOUT:-300}"
KEEP_TMP="${KEEP_TMP:-0}"
read -r -a SINK_EXTRA <<<"${SINK_ARGS:-}"

POSTERND="$BUILD_DIR/bin/posternd"
SMTP_SOURCE="$(command -v smtp-source || echo /usr/sbin/smtp-source)"
SMTP_SINK="$(command -v smtp-sink || echo /usr/sbin/smtp-sink)"
POSTFIX="$(command -v postfix || echo /usr/sbin/postfix)"
TCPDUMP="$(command -v tcpdump || echo /usr/bin/tcpdump)"
PYTHON=/usr/bin/python3

die() { echo "error: $*" >&2; exit 1; }
log() { echo "$*"; }

[[ $(id -u) == 0 ]] || die "needs root (a private Postfix instance and tcpdump on lo)"
for b in "$POSTERND" "$SMTP_SOURCE" "$SMTP_SINK" "$POSTFIX" "$TCPDUMP" "$PYTHON"; do
  [[ -x $b ]] || die "missing $b (build posternd; apt-get install postfix tcpdump python3)"
done
[[ -f /etc/postfix/master.cf ]] || die "no /etc/postfix/master.cf (package postfix)"
for v in MESSAGES SESSIONS RCPTS SIZE TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $REUSE == 0 || $REUSE == 1 ]] || die "REUSE must be 0 or 1"
for s in $ORDER; do [[ $s == posternd || $s == postfix ]] || die "ORDER: unknown system '$s'"; done

tmp="$(mktemp -d /tmp/postern-bench-queue.XXXXXX)"
chmod 0755 "$tmp"  # Postfix daemons (user postfix) must reach their queue
pids=()            # everything we started and still have to stop, by PID
postfix_master=""

stop_pid() {  # stop_pid PID [SIGNAL]: signal, wait up to 20 s, then SIGKILL
  local pid=$1 sig=${2:-TERM} i
  kill -s "$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -s KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=()
  [[ -n $postfix_master ]] && stop_pid "$postfix_master"
  postfix_master=""
  if [[ $KEEP_TMP == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_banner() {  # wait_banner PORT [PID]: until the port answers with a 220 banner
  local port=$1 pid=${2:-} i line
  for ((i = 0; i < 300; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      line=""
      read -r -t 2 line <&3 || true
      printf 'QUIT\r\n' >&3 2>/dev/null || true
      exec 3<&- 3>&-
      [[ $line == 220* ]] && return 0
    fi
    sleep 0.1
  done
  return 1
}

tree_cpu() {  # "USER SYS" CPU seconds of PID, its reaped children and its live children
  local pid=$1 c
  {
    awk '{print $14 + $16, $15 + $17}' "/proc/$pid/stat" 2>/dev/null || true
    for c in $(pgrep -P "$pid" || true); do awk '{print $14, $15}' "/proc/$c/stat" 2>/dev/null || true; done
  } | awk -v hz="$(getconf CLK_TCK)" '{ u += $1; s += $2 } END { printf "%.2f %.2f", u / hz, s / hz }'
}

count_files() { find "$1" -type f 2>/dev/null | wc -l; }

# --- posternd ---------------------------------------------------------------
start_posternd() {  # start_posternd DIR PORT SINKPORT
  local dir=$1 port=$2 sinkport=$3
  mkdir -p "$dir/var"
  cat >"$dir/postern.xml" <<EOF
<?xml version="1.0"?>
<postern>
  <server name="mx.bench.test" data-dir="$dir/var"/>
  <log level="info" file="$dir/posternd.log"/>
  <plugin-dirs></plugin-dirs>
  <listeners>
    <listener name="smtp" protocol="smtp" address="127.0.0.1" port="$port" tls="none"/>
  </listeners>
  <!-- tarpit-after="0": the default tarpit (1 s per RCPT after the 5th, for every
       client) would make RCPTS > 5 measure the tarpit; Postfix has none for valid RCPTs. -->
  <smtp max-sessions="1000" max-sessions-per-ip="1000" max-messages-per-session="100000" tarpit-after="0">
    <relay-domain>sink.test</relay-domain>
    <trusted-network>127.0.0.1/32</trusted-network>
  </smtp>
  <queue/>
  <delivery>
    <route match="*@sink.test" to="[127.0.0.1:$sinkport]" tls="none"/>
  </delivery>
  <plugins>
  </plugins>
</postern>
EOF
  "$POSTERND" --config "$dir/postern.xml" --check-config >"$dir/check.log" 2>&1 \
    || die "posternd --check-config failed: $(cat "$dir/check.log")"
  (cd "$dir" && exec "$POSTERND" --config "$dir/postern.xml" --foreground >"$dir/stdout.log" 2>&1) &
  server_pid=$!
  pids+=("$server_pid")
  wait_banner "$port" "$server_pid" || die "posternd did not start: $(tail -5 "$dir/stdout.log")"
}

posternd_pending() {  # messages still in the queue (incoming/ and hold/)
  local n=0 d
  for d in incoming hold; do
    [[ -d $1/var/queue/$d ]] && n=$((n + $(find "$1/var/queue/$d" -maxdepth 1 -type f | wc -l)))
  done
  echo "$n"
}

stop_posternd() { stop_pid "$server_pid"; forget_pid "$server_pid"; }

# --- Postfix ----------------------------------------------------------------
start_postfix() {  # start_postfix DIR PORT SINKPORT
  local dir=$1 port=$2 sinkport=$3
  mkdir -p "$dir/conf" "$dir/queue" "$dir/data"
  chown postfix:postfix "$dir/data"  # master.lock lives here
  cat >"$dir/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
myhostname = mx.eval.test
mydomain = eval.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination = \$myhostname, localhost, eval.test
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$sinkport
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
maillog_file = $dir/maillog
maillog_file_prefixes = $tmp
default_process_limit = 100
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
delay_logging_resolution_limit = 3
EOF
  # The stock master.cf, smtpd on our port, chroot off for every service (the
  # private queue directory has no chroot environment: /etc files, /dev/log).
  awk -v port="$port" '
    /^#/ || /^[ \t]/ || NF < 7 { print; next }
    $1 == "smtp" && $2 == "inet" { printf "127.0.0.1:%s inet n - n - - smtpd\n", port; next }
    { $5 = "n"; print }
  ' /etc/postfix/master.cf >"$dir/conf/master.cf"
  grep -q "^127.0.0.1:$port inet" "$dir/conf/master.cf" || die "no 'smtp inet' line in /etc/postfix/master.cf"
  "$POSTFIX" -c "$dir/conf" start >"$dir/start.log" 2>&1 \
    || die "postfix start failed: $(cat "$dir/start.log"; tail -5 "$dir/maillog" 2>/dev/null)"
  [[ -f $dir/queue/pid/master.pid ]] || die "postfix: no master.pid"
  postfix_master=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
  wait_banner "$port" || die "postfix smtpd did not answer on $port: $(tail -5 "$dir/maillog")"
}

postfix_pending() {  # queue files of the private instance (any queue)
  local n=0 d
  for d in maildrop incoming active deferred hold; do
    [[ -d $1/queue/$d ]] && n=$((n + $(find "$1/queue/$d" -type f | wc -l)))
  done
  echo "$n"
}

stop_postfix() { stop_pid "$postfix_master"; postfix_master=""; }

# --- one run ----------------------------------------------------------------
run_one() {  # run_one INDEX SYSTEM
  local idx=$1 sys=$2 dir port sinkport sink_pid dump_pid t0 t1 rc i n pend waited
  dir="$tmp/run$idx-$sys"
  mkdir -p "$dir/sink"
  port=$(free_port)
  sinkport=$(free_port)
  echo "$port $sinkport" >"$dir/ports"
  "$SMTP_SINK" -u root -d "$dir/sink/m." "${SINK_EXTRA[@]}" "127.0.0.1:$sinkport" 256 >"$dir/sink.log" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  wait_banner "$sinkport" "$sink_pid" || die "smtp-sink did not start: $(cat "$dir/sink.log")"
  rm -f "$dir"/sink/*  # the banner probes are sessions without mail: nothing dumped, but be sure

  if [[ $sys == posternd ]]; then start_posternd "$dir" "$port" "$sinkport"
  else start_postfix "$dir" "$port" "$sinkport"; fi

  # Every segment with data between smtp-source and the server and between the
  # server and the sink; 400 bytes hold the replies and the Received: header.
  "$TCPDUMP" -i lo -n -s 400 -B 32768 -Z root -w "$dir/cap.pcap" \
    "(tcp port $port or tcp port $sinkport) and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0" 2>"$dir/tcpdump.err" &
  dump_pid=$!
  pids+=("$dump_pid")
  for ((i = 0; i < 100; i++)); do grep -qs "listening on" "$dir/tcpdump.err" && break; sleep 0.1; done
  grep -q "listening on" "$dir/tcpdump.err" || die "tcpdump did not start: $(cat "$dir/tcpdump.err")"

  local src_args=(-s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -r "$RCPTS" -N -f a@eval.test -t rcpt@sink.test)
  [[ $REUSE == 1 ]] && src_args=(-d "${src_args[@]}")
  local cpu_pid cpu0 cpu1
  if [[ $sys == posternd ]]; then cpu_pid=$server_pid; else cpu_pid=$postfix_master; fi
  cpu0=$(tree_cpu "$cpu_pid")
  t0=$(date +%s.%N)
  rc=0
  "$SMTP_SOURCE" "${src_args[@]}" "127.0.0.1:$port" >"$dir/source.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  [[ $rc == 0 ]] || log "warning: $sys run $idx: smtp-source exited $rc: $(head -3 "$dir/source.log")"

  # Wait for the last delivery and an empty queue.
  waited=0
  while :; do
    n=$(count_files "$dir/sink")
    if [[ $sys == posternd ]]; then pend=$(posternd_pending "$dir"); else pend=$(postfix_pending "$dir"); fi
    if ((n >= MESSAGES && pend == 0)); then break; fi
    if ((waited >= TIMEOUT * 10)); then
      log "warning: $sys run $idx: after ${TIMEOUT}s: $n of $MESSAGES messages at the sink, $pend still queued"
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  # tcpdump (TPACKET_V3) hands packets over in blocks that retire after 1 s; on
  # SIGINT a block not yet retired is lost: wait past that before stopping it.
  sleep 2
  cpu1=$(tree_cpu "$cpu_pid")
  stop_pid "$dump_pid" INT
  forget_pid "$dump_pid"
  if [[ $sys == posternd ]]; then stop_posternd; else stop_postfix; fi
  stop_pid "$sink_pid"
  forget_pid "$sink_pid"

  "$PYTHON" "$here/analyze.py" --system "$sys" --run "$idx" --dir "$dir" --messages "$MESSAGES" \
    --rcpts "$RCPTS" --source-start "$t0" --source-end "$t1" --source-rc "$rc" \
    --cpu "$(echo "$cpu0 $cpu1" | awk '{ printf "%.2f,%.2f", $3 - $1, $4 - $2 }')" --results "$tmp/results.tsv"
}

mode="connection per message"
[[ $REUSE == 1 ]] && mode="reuse (-d)"
log "date: $(date -u '+%Y-%m-%d %H:%M UTC')  cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
log "messages: $MESSAGES x $SIZE B, $RCPTS recipient(s) each, $SESSIONS sessions, $mode; order: $ORDER"
log "posternd: $POSTERND  Postfix: $(postconf -d -h mail_version 2>/dev/null || echo '?')"
idx=0
for sys in $ORDER; do
  idx=$((idx + 1))
  run_one "$idx" "$sys"
done
status=0
"$PYTHON" "$here/analyze.py" --summary "$tmp/results.tsv" || status=$?
exit "$status"
