#!/usr/bin/env bash
# Runs a local Vault dev server with the plugin enabled at datadog/ and a role
# agent-role, against the Datadog emulator, until Ctrl-C. With DD_API_KEY and
# DD_APP_KEY set it targets real Datadog instead (site: DD_SITE, default
# datadoghq.com). Logs go to bin/dev/. Run it with `make dev`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
version=${VERSION:-v0.1.0-dev}
plugin=vault-plugin-secrets-datadog
plugin_dir=$root/bin/plugins
run_dir=$root/bin/dev

die() { echo "dev.sh: $*" >&2; exit 1; }

make -s -C "$root" build VERSION="$version"
vault=$("$here/vault-bin.sh")

# The CLI calls below must reach this server only, whatever the caller's
# shell points at.
for var in $(compgen -e | grep '^VAULT_' || true); do unset "$var"; done

rm -rf "$run_dir"
mkdir -p "$run_dir"

emulator_pid=
vault_pid=
stop_all() {
  for pid in $vault_pid $emulator_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $vault_pid $emulator_pid; do
    wait "$pid" 2>/dev/null || true
  done
  echo "stopped; logs are in $run_dir"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${DD_API_KEY:-}" ] && [ -n "${DD_APP_KEY:-}" ]; then
  api_key=$DD_API_KEY app_key=$DD_APP_KEY site=${DD_SITE:-datadoghq.com} api_url=
  echo "Datadog: the real one at $site (DD_API_KEY and DD_APP_KEY are set)"
else
  "$root/bin/datadog-emulator" -listen 127.0.0.1:0 -print-env \
    >"$run_dir/emulator.env" 2>"$run_dir/emulator.log" &
  emulator_pid=$!
  for _ in $(seq 50); do
    grep -q '^DD_API_URL=' "$run_dir/emulator.env" && break
    kill -0 "$emulator_pid" 2>/dev/null || die "the emulator exited; see $run_dir/emulator.log"
    sleep 0.2
  done
  env_value() { sed -n "s/^$1=//p" "$run_dir/emulator.env"; }
  api_key=$(env_value DD_API_KEY) app_key=$(env_value DD_APP_KEY) site=datadoghq.com api_url=$(env_value DD_API_URL)
  [ -n "$api_url" ] || die "the emulator printed no DD_API_URL; see $run_dir/emulator.log"
  echo "Datadog: the emulator at $api_url"
fi

# A dev server also listens on port+1 (cluster), so both must be free.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=
for p in $(seq 8200 2 8298); do
  if ! port_in_use "$p" && ! port_in_use $((p + 1)); then port=$p; break; fi
done
[ -n "$port" ] || die "no free port pair between 8200 and 8299"

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# HOME is the run directory so that the dev server's token helper writes its
# .vault-token there, not over the user's.
HOME=$run_dir "$vault" server -dev -dev-root-token-id="$token" \
  -dev-listen-address="127.0.0.1:$port" -dev-plugin-dir="$plugin_dir" \
  >"$run_dir/vault.log" 2>&1 &
vault_pid=$!
export VAULT_ADDR=http://127.0.0.1:$port VAULT_TOKEN=$token
for _ in $(seq 100); do
  "$vault" status >/dev/null 2>&1 && break
  kill -0 "$vault_pid" 2>/dev/null || die "Vault exited; see $run_dir/vault.log"
  sleep 0.3
done
"$vault" status >/dev/null 2>&1 || die "Vault is not up at $VAULT_ADDR; see $run_dir/vault.log"

if command -v sha256sum >/dev/null; then
  sum=$(sha256sum "$plugin_dir/$plugin" | cut -d' ' -f1)
else
  sum=$(shasum -a 256 "$plugin_dir/$plugin" | cut -d' ' -f1)
fi
"$vault" plugin register -sha256="$sum" -version="$version" secret "$plugin" >/dev/null
"$vault" secrets enable -path=datadog "$plugin" >/dev/null
# Keys go through stdin as JSON, not on a command line where ps shows them.
api_url_field=
[ -z "$api_url" ] || api_url_field=", \"api_url\": \"$api_url\""
"$vault" write datadog/config - >/dev/null <<EOF
{"api_key": "$api_key", "app_key": "$app_key", "site": "$site"$api_url_field}
EOF
"$vault" write datadog/roles/agent-role scopes=dashboards_read,monitors_read ttl=1h >/dev/null

# The sample command needs `vault` on PATH: bin/ has a link to a cached build.
path_export=
if [ "$(command -v vault || true)" != "$vault" ]; then
  vault_dir=$(dirname "$vault")
  [ "$root/bin/vault" -ef "$vault" ] && vault_dir=$root/bin
  path_export="
  export PATH=\"$vault_dir:\$PATH\""
fi
cat <<EOF

Vault $("$vault" version | cut -d' ' -f2 | tr -d ,) is running with $plugin $version at datadog/.
In another shell:
$path_export
  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
  vault read datadog/creds/agent-role

Logs: $run_dir (vault.log, emulator.log). Ctrl-C stops everything.
EOF

wait "$vault_pid" || true
vault_pid=
die "Vault exited; see $run_dir/vault.log"
