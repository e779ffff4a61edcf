# Shared by the scripts: install what is missing on Debian, start RabbitMQ, wait for it.
# Sourced, not run.

# The oldest Rust this workspace builds with (Cargo.toml's rust-version).
RUST_MINIMUM=1.88

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ensure_command() { # ensure_command COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt_install "$2"; }
}

rust_is_current() {
  command -v rustc >/dev/null 2>&1 || return 1
  local version
  version=$(rustc --version | awk '{print $2}')
  [ "$(printf '%s\n%s\n' "$RUST_MINIMUM" "$version" | sort -V | head -n 1)" = "$RUST_MINIMUM" ]
}

# A current toolchain the way Rust users install one: rustup. Debian's rustc is too old for
# this edition, so it is never installed.
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! rust_is_current; then
    if command -v rustup >/dev/null 2>&1; then
      echo "updating the Rust toolchain with rustup (zoom-relay needs rustc >= $RUST_MINIMUM)"
      rustup toolchain install stable --profile minimal && rustup default stable
    else
      ensure_command curl curl
      echo "installing Rust with rustup (zoom-relay needs rustc >= $RUST_MINIMUM)"
      if curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; then
        . "$HOME/.cargo/env"
      fi
    fi
  fi
  if ! rust_is_current; then
    echo "zoom-relay needs Rust >= $RUST_MINIMUM and could not install it. Run:" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"" >&2
    echo "then run this command again." >&2
    return 1
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  ensure_command cc gcc
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

amqp_port_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

management_answers() {
  curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1
}

# The local broker, started, with its management API (queue figures, retention policies).
ensure_rabbitmq() {
  ensure_command curl curl
  ensure_command rabbitmq-server rabbitmq-server
  if ! amqp_port_answers; then
    echo "starting RabbitMQ"
    as_root rabbitmq-server -detached
  fi
  for _ in $(seq 1 120); do
    if amqp_port_answers && as_root rabbitmqctl -q await_startup >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
  amqp_port_answers || { echo "RabbitMQ did not start within 120 s; see /var/log/rabbitmq/" >&2; return 1; }
  if ! management_answers; then
    echo "enabling RabbitMQ's management API"
    as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
  fi
  for _ in $(seq 1 60); do
    management_answers && return 0
    sleep 1
  done
  echo "RabbitMQ's management API did not answer on 127.0.0.1:15672" >&2
  return 1
}
