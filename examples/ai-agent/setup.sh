#!/bin/sh
# Sets up one AI agent identity on a Vault whose Datadog engine is mounted at
# datadog/ (as `make dev` does), then writes role-id and secret-id, the
# agent's login for agent.hcl, in the current directory. Run it with an
# operator's VAULT_ADDR and VAULT_TOKEN. DATADOG_MOUNT, APPROLE_PATH and
# POLICY_NAME change the names it uses. With SERVICE_ACCOUNT_ID (a Datadog
# service account's user id), the role issues that account's service access
# tokens instead of application keys (see README.md).
set -eu

mount=${DATADOG_MOUNT:-datadog}
approle=${APPROLE_PATH:-ai-agents}
policy=${POLICY_NAME:-datadog-ai-agent}
here=$(cd "$(dirname "$0")" && pwd)

# The credentials: an application key that can read monitors and nothing
# else, and an API key, deleted in Datadog at most 5 minutes after the agent
# stops renewing them. Their lease is a child of the agent's token, which
# revokes it when it ends (1 hour at most, below); max_ttl is longer so that
# the token's end comes first: it stops the task, rather than the agent
# replacing the keys and restarting the task near the end.
# With SERVICE_ACCOUNT_ID: a service access token of that account, limited to
# monitors_read, which Datadog itself expires soon after max_ttl, and which
# the task uses as DD_APP_KEY with no API key (agent.hcl's commented
# alternative). Datadog recommends service access tokens for AI agents; they
# are also what an engine with an access_token root can issue.
if [ -n "${SERVICE_ACCOUNT_ID:-}" ]; then
  vault write "$mount/roles/ai-agent" credential_type=service_access_token \
    service_account_id="$SERVICE_ACCOUNT_ID" scopes=monitors_read ttl=5m max_ttl=2h
else
  vault write "$mount/roles/ai-agent" scopes=monitors_read ttl=5m max_ttl=2h
fi

# What the agent's token may do: policy.hcl, with the engine's mount path.
sed "s|\"datadog/|\"$mount/|" "$here/policy.hcl" | vault policy write "$policy" -

# The agent's identity: an AppRole whose tokens carry that policy alone
# (not even Vault's default policy), live 5 minutes unless renewed and 1
# hour at most. A secret ID logs in once, within 10 minutes.
vault read "sys/auth/$approle" >/dev/null 2>&1 || vault auth enable -path="$approle" approle
vault write "auth/$approle/role/ai-agent" \
  token_policies="$policy" token_no_default_policy=true \
  token_ttl=5m token_max_ttl=1h \
  secret_id_ttl=10m secret_id_num_uses=1

umask 077
vault read -field=role_id "auth/$approle/role/ai-agent/role-id" >role-id
vault write -f -field=secret_id "auth/$approle/role/ai-agent/secret-id" >secret-id
echo "Wrote role-id and secret-id in $(pwd): start the agent within 10 minutes."
