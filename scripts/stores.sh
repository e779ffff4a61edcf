# The object-store servers the storage tests start: moto's S3 server (PyPI) and Azurite's Blob
# server (npm), pinned, installed under the user's cache, never into the system Python or the
# global npm prefix. Sourced, not run: `. scripts/stores.sh; ensure_stores`.
#
# Where they land (the tests look there; MOTO_SERVER / AZURITE_BLOB override either):
#   ${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay/moto/bin/moto_server
#   ${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay/azurite/node_modules/.bin/azurite-blob
# and the same two lines, as MOTO_SERVER=… and AZURITE_BLOB=…, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay/stores.env

# apt_install comes from lib.sh (setup.sh sources it first).
type apt_install >/dev/null 2>&1 || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: docs/storage.md records what was tested with these versions.
MOTO_VERSION=5.2.5
AZURITE_VERSION=3.37.0

stores_dir() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay"
}

# moto's server in a virtualenv of its own; re-runs are a version check.
ensure_moto() {
  local dir venv
  dir=$(stores_dir)
  venv="$dir/moto"
  if [ -x "$venv/bin/moto_server" ] && [ "$(cat "$venv/.zoom-relay-version" 2>/dev/null)" = "$MOTO_VERSION" ]; then
    return 0
  fi
  echo "installing moto[server]==$MOTO_VERSION into $venv"
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 needs its venv module from a package of its own.
    apt_install python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  echo "$MOTO_VERSION" >"$venv/.zoom-relay-version"
}

# Azurite in a local npm prefix; re-runs are a version check.
ensure_azurite() {
  local dir prefix
  dir=$(stores_dir)
  prefix="$dir/azurite"
  if [ -x "$prefix/node_modules/.bin/azurite-blob" ] && [ "$(cat "$prefix/.zoom-relay-version" 2>/dev/null)" = "$AZURITE_VERSION" ]; then
    return 0
  fi
  echo "installing azurite@$AZURITE_VERSION into $prefix"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --silent --save-exact "azurite@$AZURITE_VERSION" >/dev/null
  echo "$AZURITE_VERSION" >"$prefix/.zoom-relay-version"
}

ensure_stores() {
  local dir
  dir=$(stores_dir)
  mkdir -p "$dir"
  ensure_moto
  ensure_azurite
  {
    echo "MOTO_SERVER=$dir/moto/bin/moto_server"
    echo "AZURITE_BLOB=$dir/azurite/node_modules/.bin/azurite-blob"
  } >"$dir/stores.env"
  echo "object-store servers for the tests:"
  sed 's/^/  /' "$dir/stores.env"
}
