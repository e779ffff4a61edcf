#!/usr/bin/env bash
# A throw-away 3-node RabbitMQ cluster on this machine, for the tests that need one. It runs next to the
# system node (rabbit@localhost, 127.0.0.1:5672), which it never touches: see
# /work/shared/rabbitmq-cluster.md for the recipe and its pitfalls.
#
#   scripts/cluster.sh start [DIR]        start zr1..zr3@localhost, cluster them, write DIR/env, print the URLs
#   scripts/cluster.sh stop [DIR]         stop the three nodes and remove DIR
#   scripts/cluster.sh status [DIR]       nodes, cluster membership, queues with their members
#   scripts/cluster.sh kill N [DIR]       kill -9 node N's beam
#   scripts/cluster.sh stop-node N [DIR]  rabbitmqctl stop_app on node N
#   scripts/cluster.sh start-node N [DIR] start_app on node N, or restart its beam if it is dead; then wait
#                                         until it runs, is clustered and its quorum-queue members are online
#   scripts/cluster.sh wait-online QUEUE... [--dir DIR] [--timeout S]
#                                         wait until each queue lists 3 online members (quorum or stream)
#
# DIR defaults to /tmp/zoom-relay-cluster (or $CLUSTER_DIR). Everything of the cluster lives there:
# a private HOME (so a private Erlang cookie), and per node its config, plugin list, data, logs and pid file.
#
#   node           AMQP              Erlang distribution   management (HTTP)
#   zr1@localhost  127.0.0.1:5681    127.0.0.1:25681       127.0.0.1:15681
#   zr2@localhost  127.0.0.1:5682    127.0.0.1:25682       127.0.0.1:15682
#   zr3@localhost  127.0.0.1:5683    127.0.0.1:25683       127.0.0.1:15683
#
# Management plugin: enabled, because it can be done without any risk to the system node. Each node gets its
# own enabled_plugins file, written before the node boots (no rabbitmq-plugins call, which as root would
# default to the system node's HOME, cookie and plugin file), and its own `management.tcp.port`/`.ip` in its
# own rabbitmq.conf, so nothing binds 15672 (the system node's) nor any port off loopback. No other plugin is
# enabled (rabbitmq_prometheus would take 15692 on every node). ZR_CLUSTER_MANAGEMENT=0 at `start` leaves it
# out, which makes `start` ~10-15 s and every stop_app ~5 s faster (on stop, the management agent waits 5 s).
#
# Progress goes to stderr; `start` prints the env file's lines on stdout. Exit status is non-zero on failure.
# Timeouts (seconds): ZR_CLUSTER_BOOT_TIMEOUT (120, boot of one node), ZR_CLUSTER_WAIT_TIMEOUT (90, waits for
# cluster membership and online queue members).
set -euo pipefail

RMQ_BIN=/usr/lib/rabbitmq/bin                       # the package's real scripts, not the /usr/sbin wrappers
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NODES=(1 2 3)
MANAGEMENT=${ZR_CLUSTER_MANAGEMENT:-1}
BOOT_TIMEOUT=${ZR_CLUSTER_BOOT_TIMEOUT:-120}
WAIT_TIMEOUT=${ZR_CLUSTER_WAIT_TIMEOUT:-90}
CLI_TIMEOUT=$((BOOT_TIMEOUT + 30))                  # hard cap on any one CLI call
MARKER=.zoom-relay-cluster                          # `stop` removes only a DIR that has it

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*" >&2; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

amqp_port() { echo $((5680 + $1)); }
dist_port() { echo $((25680 + $1)); }
mgmt_port() { echo $((15680 + $1)); }
node_name() { echo "zr$1@localhost"; }
node_dir() { echo "$DIR/zr$1"; }

set_dir() {
  local d=${1:-${CLUSTER_DIR:-/tmp/zoom-relay-cluster}}
  [[ $d == /* ]] || d="$PWD/$d"
  d=$(realpath -m -- "$d")
  [[ $d =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "DIR must be a path of letters, digits and ._+-/ only: '$d'"
  case "$d" in /|/tmp|/root|/home|/usr|/usr/*|/etc|/etc/*|/var|/var/lib|/var/lib/rabbitmq*|/work|/work/main*)
    die "refusing DIR '$d'";; esac
  DIR=$d
  # the management choice made at `start` sticks to the cluster (a restarted node gets the same config)
  if [ -f "$DIR/management" ]; then MANAGEMENT=$(cat "$DIR/management"); fi
}

check_node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || die "N must be 1, 2 or 3 (got '${1:-}')"
}

# rmq TOOL N ARGS... : a RabbitMQ CLI tool against zrN@localhost, with the cluster's private HOME (cookie),
# without the system node's rabbitmq-env.conf and without anything from the caller's environment.
rmq() {
  local tool=$1 n=$2
  shift 2
  timeout --kill-after=5 "$CLI_TIMEOUT" env -i PATH="$SAFE_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    HOME="$DIR/home" RABBITMQ_CONF_ENV_FILE="$DIR/empty-env.conf" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$RMQ_BIN/$tool" -n "$(node_name "$n")" "$@"
}
ctl() { rmq rabbitmqctl "$@"; }

# beam_pid N : the OS pid of node N's live beam.smp, found by the pid-file path in its environment (so never
# the system node's beam, and right even when the pid file is stale or not written yet). Fails if none.
beam_pid() {
  local want p
  want="RABBITMQ_PID_FILE=$(node_dir "$1")/beam.pid"
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = beam.smp ] || continue
    if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF -- "$want"; then
      echo "${p#/proc/}"
      return 0
    fi
  done
  return 1
}

pid_dead() { # a killed beam can linger as a zombie until pid 1 reaps it: that counts as dead
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

app_running() { ctl "$1" -q eval 'rabbit:is_running().' 2>/dev/null | grep -qx true; }

# running_nodes N / member_nodes N : the cluster's running / member (disc) nodes as node N sees them
cluster_field() {
  local out
  out=$(ctl "$1" -q cluster_status --formatter json 2>/dev/null) || return 1
  grep -o "\"$2\":\[[^]]*\]" <<< "$out" | grep -o 'zr[0-9]@localhost' | sort -u || true
}
running_nodes() { cluster_field "$1" running_nodes; }
member_nodes() { cluster_field "$1" disk_nodes; }

# on_any_node [--except N] FUNCTION ARGS... : run FUNCTION NODE ARGS... against the first node (with a live
# beam) where it succeeds; prints "NODE<newline>" then its output. Cluster-wide queries need a running app,
# so this skips nodes that are down or stopped without a separate (slow) CLI call to ask first.
on_any_node() {
  local except="" i out
  if [ "$1" = --except ]; then except=$2; shift 2; fi
  for i in "${NODES[@]}"; do
    [ "$i" != "$except" ] || continue
    beam_pid "$i" >/dev/null || continue
    if out=$("$1" "$i" "${@:2}" 2>/dev/null); then printf '%s\n%s\n' "$i" "$out"; return 0; fi
  done
  return 1
}

show_logs() {
  local d
  d=$(node_dir "$1")
  say "last lines of $d/console.log and $d/log/:"
  tail -n 15 "$d/console.log" >&2 2>/dev/null || true
  tail -n 15 "$d"/log/*.log >&2 2>/dev/null || true
}

init_dir() {
  mkdir -p "$DIR/home"
  touch "$DIR/$MARKER"
  [ -f "$DIR/management" ] || echo "$MANAGEMENT" > "$DIR/management"
  : > "$DIR/empty-env.conf"                         # keeps /etc/rabbitmq/rabbitmq-env.conf out
  if [ ! -s "$DIR/home/.erlang.cookie" ]; then      # private cookie: cannot talk to rabbit@localhost
    ( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f | tr a-f A-F > "$DIR/home/.erlang.cookie" )
    chmod 400 "$DIR/home/.erlang.cookie"
  fi
}

write_node_config() {
  local i=$1 d
  d=$(node_dir "$i")
  mkdir -p "$d"
  {
    echo "listeners.tcp.1 = 127.0.0.1:$(amqp_port "$i")"
    if [ "$MANAGEMENT" = 1 ]; then
      echo "management.tcp.ip = 127.0.0.1"
      echo "management.tcp.port = $(mgmt_port "$i")"
    fi
  } > "$d/rabbitmq.conf"
  if [ "$MANAGEMENT" = 1 ]; then echo '[rabbitmq_management].' > "$d/enabled_plugins"
  else echo '[].' > "$d/enabled_plugins"; fi
}

check_ports_free() { # check_ports_free N : node N's ports are not taken (call while N is not running)
  local i=$1 port ports
  ports=("$(amqp_port "$i")" "$(dist_port "$i")")
  if [ "$MANAGEMENT" = 1 ]; then ports+=("$(mgmt_port "$i")"); fi
  for port in "${ports[@]}"; do
    if port_busy "$port"; then die "port 127.0.0.1:$port (for $(node_name "$i")) is already taken by another process"; fi
  done
}

# spawn_node N : start node N's beam in the background, fully detached (setsid, every fd redirected: a
# caller's $(...) would otherwise hang until the node exits). The caller checks it is not running yet.
spawn_node() {
  local i=$1 d
  d=$(node_dir "$i")
  check_ports_free "$i"
  write_node_config "$i"
  rm -f "$d/beam.pid"                               # a stale pid file (kill -9) would fool `rabbitmqctl wait`
  echo "=== $(date -Is) start" >> "$d/console.log"
  ( cd "$d" || exit 1
    env -i PATH="$SAFE_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME="$DIR/home" \
      RABBITMQ_NODENAME="$(node_name "$i")" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$(amqp_port "$i")" RABBITMQ_DIST_PORT="$(dist_port "$i")" \
      RABBITMQ_CONF_ENV_FILE="$DIR/empty-env.conf" RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/beam.pid" \
      ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      setsid "$RMQ_BIN/rabbitmq-server" >> "$d/console.log" 2>&1 < /dev/null & )
}

wait_booted() { # wait_booted N : until node N's app runs (its beam must have been spawned)
  local i=$1
  if ! ctl "$i" -q wait "$(node_dir "$i")/beam.pid" --timeout "$BOOT_TIMEOUT" >/dev/null 2>&1; then
    show_logs "$i"
    die "$(node_name "$i") did not boot within $BOOT_TIMEOUT s"
  fi
}

# wait_until DESCRIPTION COMMAND... : poll COMMAND every 0.5 s until it succeeds or WAIT_TIMEOUT passes
wait_until() {
  local what=$1 deadline=$((SECONDS + WAIT_TIMEOUT))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { say "timed out after $WAIT_TIMEOUT s waiting for $what"; return 1; }
    sleep 0.5
  done
}

all_running_seen_by() { [ "$(running_nodes "$1" | wc -l)" -eq 3 ]; }

# seen_stopped N : a node other than N answers cluster_status and does not list N as running
seen_stopped() {
  local out
  out=$(on_any_node --except "$1" running_nodes) || return 1
  ! sed 1d <<< "$out" | grep -qx "$(node_name "$1")"
}

# back_in_cluster N : N lists itself and at least one other node as running, and so does another node
back_in_cluster() {
  local own out
  own=$(running_nodes "$1") || return 1
  grep -qx "$(node_name "$1")" <<< "$own" && [ "$(wc -l <<< "$own")" -ge 2 ] || return 1
  out=$(on_any_node --except "$1" running_nodes) || return 1
  sed 1d <<< "$out" | grep -qx "$(node_name "$1")"
}

# queue_lines N : "name<TAB>type<TAB>members<TAB>online" per queue of vhost /, as node N reports them
queue_lines() {
  ctl "$1" -q list_queues --no-table-headers name type members online 2>/dev/null
}

# lagging N TYPES [QUEUE_LINES] : names of the queues of one of TYPES (regex) that have node N as a member
# but do not list it online
lagging() {
  awk -F'\t' -v node="$(node_name "$1")" -v types="^($2)\$" \
    '$2 ~ types && index($3, node) && !index($4, node) { print $1 }' <<< "${3:-}"
}

# quorum_back N : every quorum queue with a member on node N lists it online (asks node N itself)
QUEUES_SEEN=""
quorum_back() {
  QUEUES_SEEN=$(queue_lines "$1") || return 1
  [ -z "$(lagging "$1" quorum "$QUEUES_SEEN")" ]
}

write_env() {
  local i urls="" tmp
  for i in "${NODES[@]}"; do urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$i")/%2f"; done
  tmp=$(mktemp "$DIR/env.XXXXXX")
  {
    echo "CLUSTER_DIR=$DIR"
    echo "CLUSTER_AMQP_URLS=$urls"
    if [ "$MANAGEMENT" = 1 ]; then
      local m=""
      for i in "${NODES[@]}"; do m+="${m:+,}http://127.0.0.1:$(mgmt_port "$i")/"; done
      echo "CLUSTER_MANAGEMENT_URLS=$m"
    fi
  } > "$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$DIR/env"
}

cmd_start() {
  set_dir "${1:-}"
  local t0 i p spawned=() joining=() pids=() members
  t0=$(now)
  [ -x "$RMQ_BIN/rabbitmq-server" ] || die "$RMQ_BIN/rabbitmq-server not found: install the rabbitmq-server package"
  if [ -e "$DIR" ] && [ ! -e "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists and is not a cluster directory of this script"
  fi
  for i in "${NODES[@]}"; do                        # before anything starts: all or nothing
    if ! beam_pid "$i" >/dev/null; then check_ports_free "$i"; fi
  done
  init_dir
  trap '[ $? = 0 ] || say "start failed; nodes that did start are left up: \`$0 stop $DIR\` cleans up"' EXIT
  for i in "${NODES[@]}"; do
    if beam_pid "$i" >/dev/null; then
      say "$(node_name "$i") is already running (pid $(beam_pid "$i"))"
      if ! app_running "$i"; then                   # left stopped by stop-node
        say "starting the app on $(node_name "$i")"
        ctl "$i" -q start_app >/dev/null || die "start_app failed on $(node_name "$i")"
      fi
    else
      spawn_node "$i"
      spawned+=("$i")
    fi
  done
  if [ ${#spawned[@]} -gt 0 ]; then say "booting ${spawned[*]/#/zr} (logs in $DIR/zrN/)"; fi
  for i in "${spawned[@]}"; do wait_booted "$i"; done
  say "nodes up after $(since "$t0")"
  members=$(member_nodes 1) || die "cannot read cluster_status of zr1@localhost"
  for i in 2 3; do
    if ! grep -qx "$(node_name "$i")" <<< "$members"; then joining+=("$i"); fi
  done
  if [ ${#joining[@]} -gt 0 ]; then
    say "joining ${joining[*]/#/zr} to zr1@localhost"
    # stop_app and start_app are per node, so run in parallel (stop_app alone takes ~5 s with the
    # management plugin); join_cluster changes the cluster's schema, so one at a time.
    pids=()
    for i in "${joining[@]}"; do ctl "$i" -q stop_app >/dev/null & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || die "stop_app failed before join_cluster"; done
    for i in "${joining[@]}"; do
      # join_cluster logs "Failed to create a tracked connection table ... node_not_running": harmless
      ctl "$i" -q join_cluster zr1@localhost > "$(node_dir "$i")/join.log" 2>&1 \
        || { cat "$(node_dir "$i")/join.log" >&2; die "join_cluster failed for $(node_name "$i")"; }
    done
    pids=()
    for i in "${joining[@]}"; do ctl "$i" -q start_app >/dev/null & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || die "start_app failed after join_cluster"; done
  fi
  for i in "${NODES[@]}"; do
    wait_until "3 running nodes in cluster_status of $(node_name "$i")" all_running_seen_by "$i" \
      || die "the cluster did not form; see $DIR/zr*/log/"
  done
  write_env
  trap - EXIT
  say "cluster of 3 running nodes ready after $(since "$t0"); settings in $DIR/env"
  cat "$DIR/env"
}

stop_one() { # stop_one N : graceful stop of node N's beam, kill -9 if that fails
  local i=$1 pid d
  d=$(node_dir "$i")
  pid=$(beam_pid "$i") || return 0
  printf '%s' "$pid" > "$d/beam.pid"               # the pid `rabbitmqctl stop` waits for
  if ! ctl "$i" -q stop "$d/beam.pid" >/dev/null 2>&1; then
    if beam_pid "$i" >/dev/null; then
      say "$(node_name "$i") did not stop cleanly: kill -9 $pid"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  wait_until "$(node_name "$i") (pid $pid) to exit" pid_dead "$pid" || return 1
}

cmd_stop() {
  set_dir "${1:-}"
  local t0 i pids=() failed=0
  t0=$(now)
  if [ ! -e "$DIR" ]; then say "nothing to stop: $DIR does not exist"; return 0; fi
  [ -e "$DIR/$MARKER" ] || die "$DIR is not a cluster directory of this script; not touching it"
  for i in "${NODES[@]}"; do
    if beam_pid "$i" >/dev/null; then
      stop_one "$i" & pids+=($!)                    # in parallel: each stop takes a few seconds
    fi
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  for i in "${NODES[@]}"; do
    if beam_pid "$i" >/dev/null; then say "$(node_name "$i") is still running"; failed=1; fi
  done
  [ "$failed" = 0 ] || die "could not stop every node; $DIR is kept"
  rm -rf -- "$DIR"
  say "stopped the cluster and removed $DIR ($(since "$t0"))"
}

cmd_kill() {
  check_node_arg "${1:-}"
  local i=$1 pid
  set_dir "${2:-}"
  pid=$(beam_pid "$i") || die "$(node_name "$i") is not running"
  kill -9 "$pid"
  wait_until "$(node_name "$i") (pid $pid) to die" pid_dead "$pid" || die "pid $pid survived kill -9"
  say "killed $(node_name "$i") (kill -9 $pid); its pid file is stale until start-node $i"
}

cmd_stop_node() {
  check_node_arg "${1:-}"
  local i=$1 t0 up=0 j
  set_dir "${2:-}"
  t0=$(now)
  beam_pid "$i" >/dev/null || die "$(node_name "$i") is not running (its beam is dead): nothing to stop"
  for j in "${NODES[@]}"; do [ "$j" = "$i" ] || ! beam_pid "$j" >/dev/null || up=$((up + 1)); done
  [ "$up" -ge 2 ] || say "warning: fewer than 2 other nodes are up; quorum queues will lose their majority"
  ctl "$i" -q stop_app >/dev/null || die "stop_app failed on $(node_name "$i")"
  if [ "$up" -ge 1 ]; then
    wait_until "another node to see $(node_name "$i") stopped" seen_stopped "$i" \
      || die "$(node_name "$i") still counts as running"
  fi
  say "stopped the app on $(node_name "$i") in $(since "$t0") (beam stays up; start-node $i brings it back)"
}

cmd_start_node() {
  check_node_arg "${1:-}"
  local i=$1 t0 lag
  set_dir "${2:-}"
  [ -e "$DIR/$MARKER" ] || die "no cluster in $DIR (run start first)"
  t0=$(now)
  if beam_pid "$i" >/dev/null; then
    ctl "$i" -q start_app >/dev/null || die "start_app failed on $(node_name "$i")"
    say "start_app on $(node_name "$i") returned after $(since "$t0")"
  else
    say "$(node_name "$i") has no beam: restarting it"
    spawn_node "$i"
    wait_booted "$i"
    say "$(node_name "$i") booted after $(since "$t0")"
  fi
  wait_until "$(node_name "$i") to be running in the cluster" back_in_cluster "$i" \
    || die "$(node_name "$i") is not back in the cluster"
  wait_until "the quorum-queue members on $(node_name "$i") to come online" quorum_back "$i" \
    || die "quorum-queue members on $(node_name "$i") not online: $(lagging "$i" quorum "$QUEUES_SEEN" | xargs)"
  say "$(node_name "$i") running, clustered, its quorum-queue members online: $(since "$t0") in all"
  lag=$(lagging "$i" stream "$QUEUES_SEEN" | xargs)
  if [ -n "$lag" ]; then
    say "note: stream replicas on $(node_name "$i") not online yet (they lag): $lag; use wait-online before the next failure"
  fi
}

cmd_wait_online() {
  local queues=() dir="" t0 out q line
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=${2:?--dir needs a value}; shift 2;;
      --dir=*) dir=${1#--dir=}; shift;;
      --timeout) WAIT_TIMEOUT=${2:?--timeout needs a value}; shift 2;;
      --timeout=*) WAIT_TIMEOUT=${1#--timeout=}; shift;;
      -*) die "unknown option $1";;
      *) queues+=("$1"); shift;;
    esac
  done
  [ ${#queues[@]} -gt 0 ] || die "usage: cluster.sh wait-online QUEUE... [--dir DIR] [--timeout S]"
  [[ $WAIT_TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds"
  set_dir "$dir"
  t0=$(now)
  local deadline=$((SECONDS + WAIT_TIMEOUT)) missing
  while :; do
    missing=""
    if out=$(on_any_node queue_lines); then
      out=$(sed 1d <<< "$out")
      for q in "${queues[@]}"; do
        line=$(awk -F'\t' -v q="$q" '$1 == q' <<< "$out")
        if [ -z "$line" ]; then missing+=" $q(not found)"; continue; fi
        case "$(cut -f2 <<< "$line")" in
          quorum|stream) ;;
          *) die "queue $q is of type $(cut -f2 <<< "$line"): it has no replicas to wait for";;
        esac
        [ "$(cut -f4 <<< "$line" | grep -o 'zr[0-9]@localhost' | sort -u | wc -l)" -eq 3 ] \
          || missing+=" $q(online: $(cut -f4 <<< "$line"))"
      done
    else
      missing=" (no node with a running app to ask)"
    fi
    [ -n "$missing" ] || break
    [ "$SECONDS" -lt "$deadline" ] || die "after $WAIT_TIMEOUT s, not 3 members online:$missing"
    sleep 0.5
  done
  say "3 members online for ${queues[*]} ($(since "$t0"))"
}

cmd_status() {
  set_dir "${1:-}"
  local i pid state n out
  if [ ! -e "$DIR/$MARKER" ]; then echo "no cluster in $DIR"; return 1; fi
  for i in "${NODES[@]}"; do
    if pid=$(beam_pid "$i"); then
      if app_running "$i"; then state="app running"; else state="app STOPPED"; fi
      printf '%s  beam pid %-7s %-12s amqp 127.0.0.1:%s\n' "$(node_name "$i")" "$pid" "$state" "$(amqp_port "$i")"
    else
      printf '%s  DOWN (no beam)\n' "$(node_name "$i")"
    fi
  done
  if out=$(on_any_node member_nodes); then
    n=$(head -n 1 <<< "$out")
    echo "cluster as zr$n@localhost sees it:"
    echo "  members: $(sed 1d <<< "$out" | tr '\n' ' ')"
    echo "  running: $(running_nodes "$n" | tr '\n' ' ')"
    echo "queues (name, type, leader, members, online):"
    ctl "$n" -q list_queues name type leader members online | sed 's/^/  /'
  else
    echo "no node has a running app"
    return 1
  fi
  [ ! -f "$DIR/env" ] || { echo "env ($DIR/env):"; sed 's/^/  /' "$DIR/env"; }
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case "$cmd" in
  start) [ $# -le 1 ] || usage; cmd_start "$@";;
  stop) [ $# -le 1 ] || usage; cmd_stop "$@";;
  status) [ $# -le 1 ] || usage; cmd_status "$@";;
  kill) [[ $# -ge 1 && $# -le 2 ]] || usage; cmd_kill "$@";;
  stop-node) [[ $# -ge 1 && $# -le 2 ]] || usage; cmd_stop_node "$@";;
  start-node) [[ $# -ge 1 && $# -le 2 ]] || usage; cmd_start_node "$@";;
  wait-online) cmd_wait_online "$@";;
  -h|--help|help) usage;;
  *) usage;;
esac
