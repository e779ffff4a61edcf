#!/usr/bin/env bash
# make run: the whole flow on this machine with the embedded defaults — the local RabbitMQ, the
# project's Zoom simulator, and `zoom-relay run` (ingress + every stage) writing to ./demo/.
# Sends a two-segment meeting as Zoom would (plus Zoom's duplicate event and the later
# transcript), then shows where the files and the manifest landed and what was deleted at "Zoom".
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/zoom-relay
demo="$PWD/demo"
mkdir -p "$demo"
cat >"$demo/zoom-relay.toml" <<EOT
# Written by scripts/demo.sh: zoom-relay against its own Zoom simulator.
[amqp]
namespace = "demo."
[ingress]
listen = "127.0.0.1:8080"
[sim]
listen = "127.0.0.1:9090"
[zoom]
oauth_url = "http://127.0.0.1:9090/oauth/token"
api_base = "http://127.0.0.1:9090/v2"
download_hosts = ["127.0.0.1"]
[pipeline]
staging = "file://$demo/staging"
retry_delays = ["2s", "10s"]
[log]
format = "pretty"
level = "info,actix_server=warn"

[[accounts]]
name = "demo"
account_id = "demo-account"
client_id = "demo-client"
client_secret = "demo-client-secret"
secret_tokens = ["demo-secret-token"]
destination = "file://$demo/recordings"
delete_after_upload = "trash"
EOT

pids=()
trap 'for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null' EXIT
"$bin" --config "$demo/zoom-relay.toml" sim >"$demo/sim.log" 2>&1 &
pids+=("$!")
"$bin" --config "$demo/zoom-relay.toml" run >"$demo/zoom-relay.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "zoom-relay did not become ready; see $demo/zoom-relay.log"; exit 1; }

echo "== Zoom validates the endpoint"
"$bin" --config "$demo/zoom-relay.toml" sim send --scenario url-validation
echo; echo "== Zoom reports a finished two-segment meeting (and sends it twice, as Zoom does)"
sent=$("$bin" --config "$demo/zoom-relay.toml" sim send --duplicate --media-size 8000000)
echo "$sent"
uuid=$(echo "$sent" | awk '/^meeting /{print $2}')
key=$(echo "$uuid" | tr '/+' '_-')

echo; echo "== Waiting for the files and the manifest"
manifest=""
for _ in $(seq 1 120); do
  manifest=$(find "$demo/recordings" -name meeting.json -path "*$key*" 2>/dev/null | head -n 1)
  [ -n "$manifest" ] && curl -s http://127.0.0.1:9090/_sim/deletions | grep -q "$uuid" && break
  sleep 0.5
done
[ -n "$manifest" ] || { echo "nothing landed; see $demo/zoom-relay.log"; exit 1; }
echo; echo "Landed in $(dirname "$manifest"):"
ls -l "$(dirname "$manifest")"
echo; echo "Manifest (excerpt):"
python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"  {m['kind']} {m['meeting_uuid']!r} topic {m['topic']!r}, host {m['host_email']}")
for s in m["segments"]:
    print(f"  segment {s['index']} {s['start']} .. {s['end']}: " + ", ".join(f"{f['view']} ({f['size']} B)" for f in s["files"]))
print(f"  transcripts {len(m['transcripts'])}, chat {len(m['chat'])}, total {m['total_bytes']} bytes, events {len(m['source_events'])}")
PY
echo; echo "Deleted at the simulated Zoom (trash, after verified upload):"
curl -s http://127.0.0.1:9090/_sim/deletions; echo
echo; echo "Logs: $demo/zoom-relay.log. Send more with:"
echo "  $bin --config $demo/zoom-relay.toml sim send"
if [ -t 0 ]; then echo "Ctrl-C stops."; wait; fi
