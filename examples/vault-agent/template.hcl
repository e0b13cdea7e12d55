# Vault Agent, template mode: renders credentials of the Datadog role
# agent-role into datadog.env (DD_API_KEY, DD_APP_KEY, DD_SITE), keeps their
# lease renewed while it runs, and renders new ones shortly before the lease
# reaches the role's max_ttl. See README.md.
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
  # One `secret` call: one lease, whose three fields go together.
  contents = <<-EOT
  {{ with secret "datadog/creds/agent-role" -}}
  DD_API_KEY={{ .Data.api_key }}
  DD_APP_KEY={{ .Data.application_key }}
  DD_SITE={{ .Data.site }}
  {{ end -}}
  EOT
  # A token role (service_access_token, personal_access_token) needs no API
  # key: its token goes in DD_APP_KEY alone. template-token.hcl does that:
  #   DD_APP_KEY={{ .Data.access_token }}
  # The consumer must pick up new keys: run a command after each render,
  # such as
  # exec {
  #   command = ["systemctl", "restart", "my-service"]
  # }
}
