# The policy of one AI agent identity: read credentials of the Datadog role
# ai-agent, keep them and its own token alive, and nothing else. Its token
# is created without Vault's default policy (token_no_default_policy), so
# these are all the paths it can reach. setup.sh writes it with the
# engine's mount path in place of datadog/.

# Issue credentials of the one role: an application key with the role's
# scopes and an API key, as a lease.
path "datadog/creds/ai-agent" {
  capabilities = ["read"]
}

# Renew those leases, and only those: Vault Agent keeps the credentials
# alive while the task runs (up to the role's max_ttl).
path "sys/leases/renew" {
  capabilities = ["update"]
  allowed_parameters = {
    "lease_id"  = ["datadog/creds/ai-agent/*"]
    "increment" = []
  }
}

# Renew its own token while the task runs (up to the AppRole's
# token_max_ttl).
path "auth/token/renew-self" {
  capabilities = ["update"]
}
