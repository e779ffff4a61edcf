# Shared by the scripts: install what is missing on Debian, start RabbitMQ, wait for it.
# Sourced, not run.

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

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "installing Debian's Rust toolchain (zoom-relay needs rustc >= 1.88; rustup gives a newer one)"
    apt_install cargo rustc
  fi
  ensure_command cc gcc
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

amqp_port_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

ensure_rabbitmq() {
  ensure_command rabbitmq-server rabbitmq-server
  if ! amqp_port_answers; then
    echo "starting RabbitMQ"
    as_root rabbitmq-server -detached
  fi
  for _ in $(seq 1 120); do
    if amqp_port_answers && as_root rabbitmqctl -q await_startup >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  echo "RabbitMQ did not start within 120 s; see /var/log/rabbitmq/" >&2
  return 1
}
