#!/usr/bin/env bash
# Every check and test, against the real local RabbitMQ. Tests that restart the broker run last,
# alone: they would disturb every test sharing the broker with them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --profile ci -E 'not test(/broker_restart/)'
cargo nextest run --workspace --profile ci -E 'test(/broker_restart/)'
