#!/usr/bin/env bash
# make bench-ingress: signed ~2 KiB recording.completed deliveries (each distinct) from wrk against
# the ingress, and in the same run, under the same load: a minimal handler doing only the essential
# work (HMAC verify + publish with confirms on 4 channels), a bare actix-web handler; then the
# broker alone (channels x confirms in flight, to show where more no longer helps), and an
# open-loop run at a fixed rate against the ingress and the minimal handler. Prints a summary;
# docs/benchmarks.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/setup.sh >/dev/null
ensure_command wrk wrk
ensure_command python3 python3

DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-64}
CEILING_CHANNELS=${CEILING_CHANNELS:-1,2,4,8}
CEILING_WINDOWS=${CEILING_WINDOWS:-1,16,64,256}
CEILING_SECONDS=${CEILING_SECONDS:-5}
RATE=${RATE:-1000}
cargo build --release --quiet -p zoom-relay -p relay-bench
bin=target/release
ns="bench$(date +%s)."
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Every queue the run declared (the ingress declares the whole topology under its namespace).
  local queues=()
  mapfile -t queues < <(curl -s -u guest:guest 'http://127.0.0.1:15672/api/queues?columns=name' |
    python3 -c "import json,sys; [print(q['name']) for q in json.load(sys.stdin) if q['name'].startswith('$ns')]" 2>/dev/null)
  "$bin/relay-bench" cleanup --exchange "${ns}zoom.events" \
    "${queues[@]/#/--queues=}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/zoom-relay.toml" <<EOT
[amqp]
namespace = "$ns"
[ingress]
listen = "127.0.0.1:18080"
serve_metrics = true
[[accounts]]
name = "bench"
account_id = "bench-account"
client_id = "bench-client"
client_secret = "bench-client-secret"
secret_tokens = ["bench-secret"]
EOT

wait_http() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
wrk_run() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/signed.lua" "$1"; }
# CPU ticks (user + system) a process has used: per request, it is the figure that other load on
# the machine disturbs least.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Logging at its production default (info, JSON): every stored event writes a line.
start_ingress() {
  "$bin/zoom-relay" --config "$work/zoom-relay.toml" ingress >>"$work/ingress.log" 2>&1 &
  ingress=$!; pids+=("$ingress")
  wait_http http://127.0.0.1:18080/readyz
}
start_ingress
"$bin/relay-bench" tap --exchange "${ns}zoom.events" --queue "${ns}bench-count"
"$bin/relay-bench" sign --secret bench-secret --size 2048 >"$work/signed.lua"

echo "== ingress: ${CONNECTIONS} connections, ${DURATION}s" >&2
before=$(cpu_ticks "$ingress")
wrk_run http://127.0.0.1:18080/zoom/webhook >"$work/ingress.txt"
echo $(( $(cpu_ticks "$ingress") - before )) >"$work/ingress.cpu"
accepted=$(curl -s http://127.0.0.1:18080/metrics | awk -F' ' '/requests_total\{outcome="accepted"\}/ {print $2}')
kill -TERM "$ingress"; wait "$ingress" || true
stored=$("$bin/relay-bench" queue-depth --queue "${ns}bench-count")

echo "== minimal handler (HMAC verify + publish with confirms, 4 channels): same load" >&2
"$bin/relay-bench" minimal --listen 127.0.0.1:18091 --secret bench-secret \
  --exchange "${ns}zoom.events" --channels 4 >/dev/null 2>&1 &
minimal=$!; pids+=("$minimal")
wait_http http://127.0.0.1:18091/
before=$(cpu_ticks "$minimal")
wrk_run http://127.0.0.1:18091/zoom/webhook >"$work/minimal.txt"
echo $(( $(cpu_ticks "$minimal") - before )) >"$work/minimal.cpu"

echo "== bare actix-web handler: same load" >&2
"$bin/relay-bench" bare-http --listen 127.0.0.1:18090 >/dev/null 2>&1 &
bare=$!; pids+=("$bare")
wait_http http://127.0.0.1:18090/
wrk_run http://127.0.0.1:18090/zoom/webhook >"$work/bare.txt"
kill "$bare"

echo "== open loop, ${RATE} events/s, ${DURATION}s: the broker alone, the minimal handler, then the ingress" >&2
# The floor under both handlers' latency: the same schedule straight to the broker.
"$bin/relay-bench" open-loop-broker --exchange "${ns}zoom.events" --channels 4 \
  --rate "$RATE" --seconds "$DURATION" >"$work/open-broker.json"
"$bin/relay-bench" open-loop --url http://127.0.0.1:18091/zoom/webhook --secret bench-secret \
  --rate "$RATE" --seconds "$DURATION" >"$work/open-minimal.json"
kill "$minimal"
start_ingress
"$bin/relay-bench" open-loop --url http://127.0.0.1:18080/zoom/webhook --secret bench-secret \
  --rate "$RATE" --seconds "$DURATION" >"$work/open-ingress.json"
kill -TERM "$ingress"; wait "$ingress" || true

echo "== broker alone, same exchange and bindings: channels ${CEILING_CHANNELS} x in flight ${CEILING_WINDOWS}, ${CEILING_SECONDS}s each" >&2
"$bin/relay-bench" broker-publish --exchange "${ns}zoom.events" --channels "$CEILING_CHANNELS" \
  --window "$CEILING_WINDOWS" --size 2048 --seconds "$CEILING_SECONDS" >"$work/broker.jsonl"

python3 - "$work" "${accepted:-0}" "$stored" "$CONNECTIONS" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
work, accepted, stored = sys.argv[1], int(float(sys.argv[2])), int(sys.argv[3])
def wrk(name):
    text = open(f"{work}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def ms(pct):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    total = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, ms(50), ms(99), total, int(non2xx.group(1)) if non2xx else 0
ing, minimal, bare = wrk("ingress"), wrk("minimal"), wrk("bare")
table = [json.loads(line) for line in open(f"{work}/broker.jsonl") if line.strip()]
best = max(table, key=lambda row: row["per_second"])
print(f"ingress        {ing[0]:9.0f} events/s  p50 {ing[1]:6.2f} ms  p99 {ing[2]:6.2f} ms  ({ing[3]} requests, {ing[4]} non-2xx)")
print(f"minimal        {minimal[0]:9.0f} events/s  p50 {minimal[1]:6.2f} ms  p99 {minimal[2]:6.2f} ms  ({minimal[3]} requests, {minimal[4]} non-2xx)")
print(f"bare actix     {bare[0]:9.0f} req/s     p50 {bare[1]:6.2f} ms  p99 {bare[2]:6.2f} ms")
print("broker alone (msg/s, persistent, confirmed), channels x confirms in flight per channel:")
windows = sorted({row["window"] for row in table})
print("  channels " + "".join(f"{w:>9}" for w in windows))
for channels in sorted({row["channels"] for row in table}):
    cells = {row["window"]: row["per_second"] for row in table if row["channels"] == channels}
    print(f"  {channels:>8} " + "".join(f"{cells.get(w, 0):9.0f}" for w in windows))
print(f"broker ceiling {best['per_second']:9.0f} msg/s  ({best['channels']} channels x {best['window']} in flight)")
print(f"ingress / minimal handler = {ing[0] / minimal[0]:.2f}")
def cpu_us(name, total):
    return int(open(f"{work}/{name}.cpu").read()) / int(sys.argv[5]) * 1e6 / max(total, 1)
print(f"server CPU per request: ingress {cpu_us('ingress', ing[3]):.0f} us, minimal handler {cpu_us('minimal', minimal[3]):.0f} us")
print(f"ingress / broker ceiling  = {ing[0] / best['per_second']:.2f}")
for name in ("broker", "minimal", "ingress"):
    run = json.load(open(f"{work}/open-{name}.json"))
    print(f"open loop {name:8} {run['rate']}/s: {run['ok']}/{run['sent']} ok, p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, p99.9 {run['p999_ms']:.2f} ms, max {run['max_ms']:.2f} ms")
wrk_ok = ing[3] - ing[4]
print(f"stored in queue = {stored}, confirmed (server count) = {accepted}, 200s wrk received = {wrk_ok}")
# Every 200 is stored. The extras are requests in flight when wrk hung up (at most one per
# connection): the broker stored them, nobody was told, so Zoom would retry them (at least once).
ok = accepted >= wrk_ok and wrk_ok <= stored <= wrk_ok + int(sys.argv[4])
print("every 200 stored, extras within the in-flight requests: " + ("yes" if ok else "NO"))
PY
