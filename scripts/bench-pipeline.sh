#!/usr/bin/env bash
# make bench-pipeline: see scripts/bench-pipeline.py. MEETINGS and MEDIA_MIB override the size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/setup.sh >/dev/null
ensure_command curl curl
ensure_command python3 python3
cargo build --release --quiet -p zoom-relay
exec python3 scripts/bench-pipeline.py
