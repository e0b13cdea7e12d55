# Vault Agent, exec mode: runs a child process with DD_API_KEY, DD_APP_KEY
# and DD_SITE from one lease of the Datadog role agent-role in its
# environment, keeps the lease renewed while it runs, and starts the child
# again with new keys shortly before the lease reaches the role's max_ttl.
# Nothing is written to disk. See README.md.
#
# Vault's address comes from VAULT_ADDR. Relative paths are relative to the
# directory the agent runs in. The child inherits the agent's environment:
# start the agent without VAULT_TOKEN in it.

auto_auth {
  # Logs in with the token in the file vault-token: with `make dev`, its
  # root token. In production use an auth method of the platform instead
  # (approle, kubernetes, aws…; see README.md).
  method "token_file" {
    config = {
      token_file_path = "vault-token"
    }
  }
}

# The three templates read the same path: the agent reads it once, and the
# variables hold the fields of that one lease.
env_template "DD_API_KEY" {
  contents             = "{{ with secret \"datadog/creds/agent-role\" }}{{ .Data.api_key }}{{ end }}"
  error_on_missing_key = true
}

env_template "DD_APP_KEY" {
  contents             = "{{ with secret \"datadog/creds/agent-role\" }}{{ .Data.application_key }}{{ end }}"
  error_on_missing_key = true
}

# For a token role (credential_type service_access_token or
# personal_access_token), the token is the whole credential: Datadog takes
# it as DD-APPLICATION-KEY and evaluates no API key. Replace the two
# templates above with this one, and read the same role in DD_SITE's, so
# that both come from one lease:
#
# env_template "DD_APP_KEY" {
#   contents             = "{{ with secret \"datadog/creds/agent-token-role\" }}{{ .Data.access_token }}{{ end }}"
#   error_on_missing_key = true
# }

env_template "DD_SITE" {
  contents             = "{{ with secret \"datadog/creds/agent-role\" }}{{ .Data.site }}{{ end }}"
  error_on_missing_key = true
}

exec {
  # The program that needs the keys. This stand-in says which keys it was
  # started with (their last four characters) and waits.
  command                   = ["sh", "-c", "echo \"$(date +%T) pid $$ started with DD_API_KEY ...$(printf %s \"$DD_API_KEY\" | tail -c 4), DD_APP_KEY ...$(printf %s \"$DD_APP_KEY\" | tail -c 4), DD_SITE $DD_SITE\"; exec sleep 86400"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}
