#!/usr/bin/env bash
# make run: the ingress against the local RabbitMQ with the demo settings; posts a URL-validation
# challenge and a signed recording.completed as Zoom would, and shows what happened. Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/zoom-relay
secret=demo-secret-token
url=http://127.0.0.1:8080/zoom/webhook

"$bin" --config deploy/demo.toml ingress &
ingress=$!
trap 'kill -TERM $ingress 2>/dev/null; wait $ingress 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.1; done

post() { # post BODY: signed exactly as Zoom signs
  local ts sig
  ts=$(date +%s)
  sig=$(printf 'v0:%s:%s' "$ts" "$1" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
  curl -s -w '  -> HTTP %{http_code}\n' -H 'content-type: application/json' \
    -H "x-zm-request-timestamp: $ts" -H "x-zm-signature: v0=$sig" -d "$1" "$url"
}
echo; echo "== Zoom validates the endpoint"
post '{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1}'
echo "== Zoom reports a finished recording"
post '{"event":"recording.completed","event_ts":1700000000000,"payload":{"account_id":"demo-account","object":{"uuid":"4444AAAiAAAAAiAiAiiAii==","topic":"Demo"}}}'
echo "== A forged request"
curl -s -w '  -> HTTP %{http_code}\n' -H 'x-zm-request-timestamp: 1' -H 'x-zm-signature: v0=00' -d '{}' "$url"
echo; echo "== Metrics"; curl -s http://127.0.0.1:8080/metrics | grep -E '^zoom_relay_ingress_(requests|events)_total'
echo; echo "The ingress keeps running on $url; Ctrl-C stops it."
wait $ingress
