# Vault Agent, template mode, for a token role: renders the access token of
# one lease of the Datadog role agent-token-role (credential_type
# service_access_token or personal_access_token) into datadog.env as
# DD_APP_KEY, with DD_SITE and no DD_API_KEY. Datadog authenticates a token
# sent as DD-APPLICATION-KEY by itself (an API key is optional there and not
# evaluated), so every tool that reads DD_API_KEY/DD_APP_KEY takes it. The
# agent keeps the lease renewed while it runs and renders a new token
# shortly before the lease reaches the role's max_ttl. See README.md.
#
# Vault's address comes from VAULT_ADDR. Relative paths are relative to the
# directory the agent runs in.

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

template {
  destination = "datadog.env"
  perms       = "0600"
  # One `secret` call: one lease. The token is the whole credential.
  contents = <<-EOT
  {{ with secret "datadog/creds/agent-token-role" -}}
  DD_APP_KEY={{ .Data.access_token }}
  DD_SITE={{ .Data.site }}
  {{ end -}}
  EOT
  # The consumer must pick up new tokens: run a command after each render,
  # such as
  # exec {
  #   command = ["systemctl", "restart", "my-service"]
  # }
}
