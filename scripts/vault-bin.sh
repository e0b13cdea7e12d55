#!/usr/bin/env bash
# Prints the path of a working `vault` binary, building one when none is found.
#
# Order: $VAULT_BIN, then `vault` on PATH, then a cached build of Vault
# $VAULT_VERSION made from the Go module proxy (scripts/vault/go.mod). The
# cache lives in the user's cache directory, keyed by version, so fresh clones
# on the same machine (CI included) reuse it; bin/vault in the checkout is a
# git-ignored link to it. The first build takes about ten minutes on 2 cores.
set -euo pipefail

VAULT_VERSION=1.21.0
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

works() { [ -x "$1" ] && "$1" version >/dev/null 2>&1; }

if [ -n "${VAULT_BIN:-}" ]; then
  works "$VAULT_BIN" || { echo "VAULT_BIN=$VAULT_BIN does not run 'vault version'" >&2; exit 1; }
  echo "$VAULT_BIN"; exit 0
fi
if found=$(command -v vault 2>/dev/null) && works "$found"; then
  echo "$found"; exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-datadog/vault-$VAULT_VERSION
bin=$cache/vault
if ! works "$bin"; then
  mkdir -p "$cache"
  echo "building Vault v$VAULT_VERSION into $cache (first time only, ~10 minutes)" >&2
  (cd "$here/vault" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/hashicorp/vault) >&2
  mv "$bin.tmp" "$bin"
  works "$bin" || { echo "built $bin but it does not run" >&2; exit 1; }
fi
mkdir -p "$root/bin"
ln -sfn "$bin" "$root/bin/vault"
echo "$bin"
