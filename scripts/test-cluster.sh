#!/usr/bin/env bash
# make test-cluster: zoom-relay against a throw-away 3-node RabbitMQ cluster that loses a node under
# load (scripts/test-cluster.py says what it checks; scripts/cluster.sh runs the cluster). Slow
# (about 2 minutes) and it kills broker nodes, so neither `cargo test` nor scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_command python3 python3
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p zoom-relay
exec python3 scripts/test-cluster.py
