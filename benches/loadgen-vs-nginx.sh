#!/usr/bin/env bash
# How many live players one CPU core serves with zero stalls: Encore's origin serving a live
# channel, against nginx serving a live copy of the same channel's files. The ratio is the
# figure in the README ("Load testing (`encore loadgen`)").
#
#   make loadgen-report            (installs nginx, builds, runs this)
#   ENCORE=target/release/encore START=250 DURATION=30 NICE=-20 bash benches/loadgen-vs-nginx.sh
#
# What runs where (two cores; others are left alone):
#   core 0  the server under test, alone: Encore's HTTP runtime (its `encore-http` threads;
#           the daemon starts pinned there, so tokio sizes itself to one worker, as nginx gets
#           one worker process), or nginx.
#   core 1  everything else: the live channel's input, clocks and encoders (moved off core 0
#           thread by thread once the channel runs), the copy loop that feeds nginx, and
#           `encore loadgen`.
# One channel runs all along: first Encore's origin serves it, then nginx serves the copy.
# Everything runs at nice NICE (-20 when root): other work on the machine then takes what the
# benchmark leaves, rather than deciding the figure. The server's own CPU (Encore's
# `encore-http` threads, nginx's processes) and the load generator's are reported per run;
# the kernel's share of loopback TCP is in neither.
#
# The copy: every 0.5 s curl fetches each media playlist from Encore, then the segments it
# names that the copy lacks, and only then moves the new playlist into place (after its
# segments, with rename, so nginx never lists a segment it does not have). Segments older than
# three minutes are removed. The players read HLS: a DASH player asks for a segment at the
# time the MPD names, and a copy (unlike Encore, which holds such a request until the segment
# is published) would have to answer 404 until the segment arrives.
#
# The search, per server: players doubled from START until a run has a stall or an error,
# then the gap halved down to 5 %. A run ramps its players over 10 s (at least 10 starts a
# second) and lasts DURATION seconds; every player plays RENDITION (top). The figure is the
# largest number of players whose run had zero stalls and zero errors.
set -euo pipefail

ENCORE=${ENCORE:-target/release/encore}
START=${START:-250}
DURATION=${DURATION:-30}
OUT=${OUT:-out/loadgen-report.txt}
RENDITION=${RENDITION:-top}
CHANNEL_INPUT=${CHANNEL_INPUT:-test:1280x720@30}
CHANNEL_LADDER=${CHANNEL_LADDER:-720:3000k,360:800k}
if [ -z "${NICE:-}" ]; then NICE=0; [ "$(id -u)" -eq 0 ] && NICE=-20; fi

for tool in "$ENCORE" nginx taskset curl python3; do
  command -v "$tool" >/dev/null || {
    echo "loadgen-vs-nginx: $tool is missing (make loadgen-report installs and builds)" >&2
    exit 2
  }
done
if [ "$(nproc --all)" -lt 2 ]; then
  echo "loadgen-vs-nginx: needs two cores" >&2
  exit 2
fi
# Each player holds two connections (video, audio): the open-files limit bounds the search.
ulimit -n "$(ulimit -Hn)"
MAX_PLAYERS=${MAX_PLAYERS:-$(( ($(ulimit -n) - 200) / 2 ))}
WARMUP=${WARMUP:-60}

WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "$*" | tee -a "$WORK/report"; }

# --- the live channel, served by Encore ---------------------------------------------------
cat >"$WORK/encore.toml" <<EOF
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
# Every simulated player comes from 127.0.0.1: the per-client share would count them as one.
max_in_flight_per_client = 4096

[[channels]]
name = "live"
input = "$CHANNEL_INPUT"
ladder = "$CHANNEL_LADDER"
preset = "ultrafast"
segment_duration = 2
dvr_window = 60
EOF
nice -n "$NICE" taskset -c 0 "$ENCORE" serve --config "$WORK/encore.toml" >"$WORK/encore.out" 2>"$WORK/encore.err" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 100); do
  grep -q "serving on" "$WORK/encore.out" 2>/dev/null && break
  sleep 0.1
done
BASE=$(sed -n 's/^encore: serving on //p' "$WORK/encore.out")
[ -n "$BASE" ] || { cat "$WORK/encore.err" >&2; exit 1; }
ENCORE_URL="$BASE/live/live/master.m3u8"

# Encore's HTTP threads on core 0, the channel's threads on core 1.
pin_encore() {
  for task in /proc/"$DAEMON"/task/*; do
    local core=1
    [ "$(cat "$task/comm" 2>/dev/null)" = encore-http ] && core=0
    taskset -pc "$core" "${task##*/}" >/dev/null 2>&1 || true
  done
}

for _ in $(seq 300); do
  curl -sf -o /dev/null "$ENCORE_URL" && break
  sleep 0.2
done
pin_encore
echo "loadgen-vs-nginx: channel on air at $ENCORE_URL; letting its 60 s window fill" >&2
sleep "$WARMUP"

# --- one run --------------------------------------------------------------------------------
# The CPU ticks (user + system) used so far by the server under test: Encore's encore-http
# threads, or every nginx process.
server_ticks() {
  local tasks
  if [ "$1" = encore ]; then
    tasks=$(grep -lx encore-http /proc/"$DAEMON"/task/*/comm | sed 's|/comm$|/stat|')
  else
    tasks=$(for p in $(pgrep -x nginx); do echo "/proc/$p/stat"; done)
  fi
  # shellcheck disable=SC2086
  cat $tasks 2>/dev/null | awk '{ sum += $14 + $15 } END { print sum + 0 }'
}

# trial SERVER URL PLAYERS: one run; prints a row; succeeds when it had no stall and no error.
trial() {
  local server=$1 url=$2 players=$3
  local ramp=$(( players / 10 > 10 ? players / 10 : 10 ))
  [ "$server" = encore ] && pin_encore
  local before after load
  load=$(cut -d' ' -f1 /proc/loadavg)
  before=$(server_ticks "$server")
  nice -n "$NICE" taskset -c 1 "$ENCORE" loadgen "$url" --players "$players" --ramp "$ramp" \
    --rendition "$RENDITION" --duration "$DURATION" --json >"$WORK/run.json" 2>"$WORK/run.log" || true
  after=$(server_ticks "$server")
  python3 - "$server" "$players" "$WORK/run.json" $(( after - before )) "$(getconf CLK_TCK)" \
    "$load" <<'EOF' | tee -a "$WORK/report"
import json, sys
server, players, path, ticks, hz, load = sys.argv[1:7]
try:
    s = json.load(open(path))
except Exception:
    print(f"{server:<7}{players:>8}  loadgen gave no summary")
    sys.exit(1)
errors = sum(s["errors"].values()) + s["players"]["failed_to_start"]
seconds = max(s["seconds"], 1e-3)
server_cpu = 100 * int(ticks) / int(hz) / seconds
loadgen_cpu = 100 * s["generator_cpu_seconds"] / seconds
print(f"{server:<7}{players:>8}{s['stalls']:>8}{errors:>8}{s['requests_per_second']:>9.0f}"
      f"{s['bytes_per_second'] / 1e6:>9.1f}{s['segment']['p99_ms']:>9.0f}"
      f"{server_cpu:>8.0f}%{loadgen_cpu:>8.0f}%{float(load):>7.1f}  "
      + " ".join(f"{k}:{v}" for k, v in s["errors"].items()))
sys.exit(0 if s["stalls"] == 0 and errors == 0 else 1)
EOF
}

# search SERVER URL: the largest number of players with zero stalls and errors.
search() {
  local server=$1 url=$2 lo=0 hi=0 m=$START
  while [ "$m" -le "$MAX_PLAYERS" ]; do
    if trial "$server" "$url" "$m"; then lo=$m; m=$(( m * 2 )); else hi=$m; break; fi
  done
  [ "$hi" -eq 0 ] && hi=$(( MAX_PLAYERS + 1 ))
  while [ $(( hi - lo )) -gt $(( lo / 20 > 5 ? lo / 20 : 5 )) ]; do
    m=$(( (lo + hi) / 2 ))
    [ "$m" -gt "$MAX_PLAYERS" ] && break
    if trial "$server" "$url" "$m"; then lo=$m; else hi=$m; fi
  done
  echo "$lo" >"$WORK/best.$server"
}

log "encore loadgen, live HLS ($CHANNEL_INPUT as $CHANNEL_LADDER + AAC, D = 2 s, 60 s window),"
log "$RENDITION rendition, $DURATION s runs (10 s ramp); server on core 0, channel + load on core 1"
log "$(uname -m), $(nproc --all) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "(p99: segment latency, ms; CPU: share of one core; load: the machine's 1-minute load average)"
log "server players  stalls  errors    req/s     MB/s      p99  server  loadgen   load  errors by kind"
search encore "$ENCORE_URL"

# --- the same channel, copied for nginx -----------------------------------------------------
WWW="$WORK/www/live/live"
mkdir -p "$WWW"
copy_once() {
  local base="$BASE/live/live" tmp
  curl -sf -o "$WWW/.master" "$base/master.m3u8" && mv "$WWW/.master" "$WWW/master.m3u8"
  local renditions
  renditions=$(sed -n -e 's|^\([^#].*\)/index.m3u8$|\1|p' -e 's|.*URI="\([^"]*\)/index.m3u8".*|\1|p' \
    "$WWW/master.m3u8")
  for r in $renditions; do
    mkdir -p "$WWW/$r"
    tmp="$WWW/$r/.index"
    curl -sf -o "$tmp" "$base/$r/index.m3u8" || continue
    [ -s "$WWW/$r/init.mp4" ] || { curl -sf -o "$WWW/$r/.init" "$base/$r/init.mp4" &&
      mv "$WWW/$r/.init" "$WWW/$r/init.mp4"; }
    local fetch=() complete=true
    for seg in $(grep -v '^#' "$tmp"); do
      [ -e "$WWW/$r/$seg" ] || fetch+=(-o "$WWW/$r/$seg.part" "$base/$r/$seg")
    done
    [ ${#fetch[@]} -eq 0 ] || curl -sf "${fetch[@]}" || true
    for part in "$WWW/$r"/*.part; do [ -e "$part" ] && mv "$part" "${part%.part}"; done
    for seg in $(grep -v '^#' "$tmp"); do [ -e "$WWW/$r/$seg" ] || complete=false; done
    $complete && mv "$tmp" "$WWW/$r/index.m3u8"
    find "$WWW/$r" -name '*.m4s' -mmin +3 -delete
  done
}
taskset -apc 1 "$DAEMON" >/dev/null
( while :; do copy_once || true; sleep 0.5; done ) &
COPY=$!
PIDS+=("$COPY")
taskset -pc 1 "$COPY" >/dev/null
renice -n "$NICE" -p "$COPY" >/dev/null
sleep 5

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
# As one tunes nginx for static segments: one worker, sendfile, keep-alive, no access log.
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
error_log stderr error;
pid $WORK/nginx.pid;
events { worker_connections $(( $(ulimit -n) - 100 )); }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  types { application/vnd.apple.mpegurl m3u8; application/dash+xml mpd; video/mp4 mp4 m4s; }
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $WORK/www; }
}
EOF
nice -n "$NICE" taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" 2>"$WORK/nginx.err" &
PIDS+=("$!")
NGINX_URL="http://127.0.0.1:$PORT/live/live/master.m3u8"
for _ in $(seq 50); do curl -sf -o /dev/null "$NGINX_URL" && break; sleep 0.2; done
search nginx "$NGINX_URL"

ENCORE_BEST=$(cat "$WORK/best.encore")
NGINX_BEST=$(cat "$WORK/best.nginx")
log "encore: $ENCORE_BEST players with zero stalls"
log "nginx:  $NGINX_BEST players with zero stalls"
log "encore / nginx: $(python3 -c "print(f'{$ENCORE_BEST / max($NGINX_BEST, 1):.2f}x')")"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/report" "$OUT"
echo "loadgen-vs-nginx: report in $OUT" >&2
