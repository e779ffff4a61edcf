#!/usr/bin/env bash
# Installs what zoom-relay needs on a Debian machine and starts RabbitMQ. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_command curl curl
ensure_command python3 python3
ensure_rust
ensure_rabbitmq
# The joined video (assemble) and the media tests: ffmpeg and ffprobe. The status page tests: a
# headless browser.
ensure_command ffmpeg ffmpeg
ensure_command chromium chromium
. scripts/stores.sh
ensure_stores
