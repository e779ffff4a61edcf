#!/usr/bin/env bash
# make bench-download: one file from the simulator to local disk with zoom-relay's client
# (streaming, SHA-256 on the fly), beside curl fetching the same URL to the same disk in the same
# run. Sizes: SIZES (MiB, default "200 2048"). Reports MB/s, the ratio to curl, CPU seconds
# (user + system) per GiB, and peak RSS. RUNS (default 1) repeats each size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust
ensure_command curl curl
ensure_command /usr/bin/time time
ensure_command python3 python3

SIZES=${SIZES:-"200 2048"}
RUNS=${RUNS:-1}
cargo build --release --quiet -p zoom-relay -p relay-bench
bin=target/release
work=target/bench-download
rm -rf "$work"; mkdir -p "$work"
cat > "$work/zoom-relay.toml" <<EOT
[sim]
listen = "127.0.0.1:19191"
[zoom]
oauth_url = "http://127.0.0.1:19191/oauth/token"
api_base = "http://127.0.0.1:19191/v2"
download_hosts = ["127.0.0.1"]
[log]
level = "warn"
[[accounts]]
name = "bench"
account_id = "bench-account"
client_id = "bench-client"
client_secret = "bench-client-secret"
secret_tokens = ["bench-secret"]
EOT
"$bin/zoom-relay" --config "$work/zoom-relay.toml" sim >"$work/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; rm -f "$work"/*.bin' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:19191/_sim/stats >/dev/null && break; sleep 0.1; done

grep -m1 'model name' /proc/cpuinfo
printf '%-8s %-7s %10s %10s %7s %10s %14s\n' size tool "MB/s" seconds ratio "CPU s/GiB" "peak RSS"
for mib in $SIZES; do for _ in $(seq 1 "$RUNS"); do
  "$bin/relay-bench" sim-meeting --sim http://127.0.0.1:19191 --size $((mib * 1048576)) >"$work/meeting.json"
  url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/meeting.json")
  token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/meeting.json")

  /usr/bin/time -f '%M %U %S' -o "$work/client.rss" \
    "$bin/relay-bench" download --config "$work/zoom-relay.toml" --meeting "$work/meeting.json" \
    --out "$work/client.bin" >"$work/client.json"
  rm -f "$work/client.bin"
  /usr/bin/time -f '%M %U %S' -o "$work/curl.rss" \
    curl -sSL -H "Authorization: Bearer $token" -o "$work/curl.bin" -w '%{size_download} %{time_total}\n' "$url" >"$work/curl.txt"
  rm -f "$work/curl.bin"

  python3 - "$work" "$mib" <<'PY'
import json, sys
work, mib = sys.argv[1], sys.argv[2]
client = json.load(open(f"{work}/client.json"))
size, seconds = open(f"{work}/curl.txt").read().split()
curl_mb = int(size) / 1048576 / float(seconds)
def usage(name):
    rss, user, system = open(f"{work}/{name}.rss").read().strip().splitlines()[-1].split()
    return int(rss) / 1024, (float(user) + float(system)) / (int(mib) / 1024)
(client_rss, client_cpu), (curl_rss, curl_cpu) = usage("client"), usage("curl")
print(f"{mib+' MiB':<8} {'client':<7} {client['mb_per_s']:10.1f} {client['seconds']:10.2f} {client['mb_per_s']/curl_mb:7.2f} {client_cpu:10.2f} {client_rss:11.1f} MiB")
print(f"{'':<8} {'curl':<7} {curl_mb:10.1f} {float(seconds):10.2f} {1:7.2f} {curl_cpu:10.2f} {curl_rss:11.1f} MiB")
PY
done; done
