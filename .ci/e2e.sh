#!/usr/bin/env bash
# Runs the end-to-end tests in e2e/ (MedplumClient, openid-client and headless Chromium) against a
# release build of medgate. It installs Debian's chromium when /usr/bin/chromium is missing and the
# npm packages from e2e/package-lock.json. It builds the release binary only when it is missing.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
  fi
  echo "e2e: installing Debian's chromium"
  "${sudo_cmd[@]}" apt-get update
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

export MEDGATE_BIN="${MEDGATE_BIN:-$repo_root/target/release/medgate}"
if [ ! -x "$MEDGATE_BIN" ]; then
  echo "e2e: building $MEDGATE_BIN"
  cargo build --release
fi

cd e2e
npm ci --no-audit --no-fund
npm test
