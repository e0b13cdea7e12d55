#!/usr/bin/env bash
# Installs the built plugin in an existing Vault: `make register` and
# `make upgrade` run it.
#
#   scripts/register.sh register   copy the plugin into PLUGIN_DIR under a
#                                  versioned file name and register it in the
#                                  catalog with its SHA-256 and VERSION
#   scripts/register.sh upgrade    register, then move the mount MOUNT to
#                                  VERSION (secrets tune + plugin reload),
#                                  printing its running version before and after
#
# Environment: PLUGIN_BIN (the built plugin), VERSION, PLUGIN_DIR (the
# server's plugin_directory), MOUNT (upgrade; default datadog), and the
# caller's VAULT_ADDR and VAULT_TOKEN (or token helper). REPLACE=1 lets a
# version's file be replaced by a different build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
plugin=vault-plugin-secrets-datadog

die() { echo "register.sh: $*" >&2; exit 1; }

action=${1:-}
case $action in
  register|upgrade) ;;
  *) die "usage: $0 register|upgrade (see the comment at the top)" ;;
esac

bin=${PLUGIN_BIN:-$root/bin/plugins/$plugin}
version=${VERSION:-}
dir=${PLUGIN_DIR:-}
mount=${MOUNT:-datadog}
mount=${mount%/}

[ -n "$version" ] || die "VERSION is required, such as VERSION=v0.2.0 (Vault wants a semantic version)"
[[ $version =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$ ]] ||
  die "VERSION=$version is not a semantic version such as v0.2.0 or v0.2.0-rc.1"
[ -n "$dir" ] || die "PLUGIN_DIR is required: the plugin_directory of the Vault server's configuration"
[ -d "$dir" ] || die "PLUGIN_DIR=$dir is not a directory; it must be the server's plugin_directory"
[ -f "$bin" ] || die "no plugin binary at $bin; run make build first"
# An unset VAULT_ADDR would make the CLI talk to https://127.0.0.1:8200,
# which may not be the server meant.
[ -n "${VAULT_ADDR:-}" ] || die "VAULT_ADDR is not set: point it at the Vault server to register the plugin in"

vault=$("$here/vault-bin.sh")

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# running_version prints the plugin version the mount runs now.
running_version() {
  "$vault" read -field=running_plugin_version "sys/mounts/$mount"
}

if [ "$action" = upgrade ]; then
  before=$(running_version) || die "cannot read the mount $mount/ at $VAULT_ADDR; enable the engine there first (vault secrets enable -path=$mount $plugin)"
  echo "mount $mount/ runs $plugin $before"
fi

# Each version keeps a file of its own, so that mounts still pinned to an
# older version go on running (and restarting) with it.
command_name=$plugin-$version
target=$dir/$command_name
sum=$(sha256_of "$bin")
if [ -e "$target" ]; then
  existing=$(sha256_of "$target")
  if [ "$existing" = "$sum" ]; then
    echo "$target is already this build (sha256 $sum)"
  elif [ "${REPLACE:-}" = 1 ]; then
    echo "replacing $target (sha256 $existing) with this build, as REPLACE=1 asks"
  else
    die "$target exists and is another build (sha256 $existing, this build: $sum). A registered version's binary should not change under its mounts: build with another VERSION, or set REPLACE=1 to replace it"
  fi
fi
if [ ! -e "$target" ] || [ "$(sha256_of "$target")" != "$sum" ]; then
  # A copy next to the target, then a rename: a running plugin process
  # keeps its file, and Vault never sees half a binary.
  tmp=$(mktemp "$dir/.$command_name.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  cp "$bin" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$target"
  trap - EXIT
  echo "copied $bin to $target"
fi

"$vault" plugin register -sha256="$sum" -version="$version" -command="$command_name" secret "$plugin" >/dev/null
echo "registered secret plugin $plugin $version at $VAULT_ADDR: command $command_name, sha256 $sum"

if [ "$action" = register ]; then
  cat <<EOF

Enable it with:
  vault secrets enable -path=datadog -plugin-version=$version $plugin
or move a mount that runs an older version to it with:
  make upgrade VERSION=$version PLUGIN_DIR=$dir MOUNT=datadog
EOF
  exit 0
fi

"$vault" secrets tune -plugin-version="$version" "$mount" >/dev/null
echo "tuned mount $mount/ to plugin version $version"
# Only this mount restarts; other mounts of the plugin go on undisturbed.
# sys/plugins/reload/backend takes mounts: the 1.21 CLI's
# `vault plugin reload -mounts=...` sends them to the root-namespace
# endpoint, which knows only plugin names, and fails with 404.
"$vault" write sys/plugins/reload/backend mounts="$mount" >/dev/null
echo "reloaded mount $mount/"
after=$(running_version)
echo "mount $mount/ runs $plugin $after (was $before)"
[ "$after" = "$version" ] || die "mount $mount/ runs $after after the reload, not $version; see Vault's log"
