#!/usr/bin/env bash
# Every check and test, against the real local RabbitMQ. Tests that restart the broker are
# ignored by plain `cargo test` and run last here, alone: they would disturb every test sharing
# the broker with them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
scripts/check-deploy.sh
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --profile ci
cargo nextest run --workspace --profile ci --run-ignored only
