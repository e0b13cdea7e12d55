# The address and token come from VAULT_ADDR and VAULT_TOKEN. The provider
# does its work with a child token of that token, which expires after
# max_lease_ttl_seconds (default 1200): every lease it obtains ends with it,
# at the latest.
provider "vault" {}

resource "vault_mount" "datadog" {
  path        = var.mount_path
  type        = "vault-plugin-secrets-datadog" # the name the plugin is registered under
  description = "Short-lived Datadog credentials"

  default_lease_ttl_seconds = 3600
  max_lease_ttl_seconds     = 86400
}

# The engine's own keys, sent when the mount is created and again whenever
# datadog_keys_version changes: the behaviour of a write-only argument, which
# vault_generic_endpoint does not have (its data_json is kept in the state).
# The keys come from ephemeral variables and reach the vault CLI through its
# environment and stdin, so neither the state, a saved plan nor a process
# listing holds them.
resource "terraform_data" "datadog_keys" {
  triggers_replace = [vault_mount.datadog.accessor, var.datadog_keys_version]

  provisioner "local-exec" {
    command = <<-EOT
      printf '{"api_key":"%s","app_key":"%s","site":"%s","api_url":"%s"}' \
        "$DD_API_KEY" "$DD_APP_KEY" "$DD_SITE" "$DD_API_URL" |
        vault write "$MOUNT/config" - >/dev/null
    EOT
    environment = {
      MOUNT      = vault_mount.datadog.path
      DD_API_KEY = var.datadog_api_key
      DD_APP_KEY = var.datadog_app_key
      DD_SITE    = var.datadog_site
      DD_API_URL = var.datadog_api_url
    }
  }
}

# The rest of the configuration, under drift detection. A config read returns
# more fields than these (owner_id, api_key_last4...): ignore_absent_fields
# compares only the fields written. Durations are integer seconds, the form
# the engine reads back.
resource "vault_generic_endpoint" "config" {
  depends_on = [terraform_data.datadog_keys]

  path                 = "${vault_mount.datadog.path}/config"
  ignore_absent_fields = true
  # Unmounting removes the configuration; deleting it first would be refused
  # while leases issued under it are outstanding.
  disable_delete = true

  data_json = jsonencode({
    site            = var.datadog_site
    api_url         = var.datadog_api_url
    request_timeout = 30
    tidy_interval   = 3600
  })
}

# A role for services: an application key and an API key per lease, for an
# hour, renewable up to a day. A role read returns every field, defaults
# included; scopes come back as a list and ttl and max_ttl as integer
# seconds, so they are written that way.
resource "vault_generic_endpoint" "role_service" {
  depends_on = [vault_generic_endpoint.config]

  path                 = "${vault_mount.datadog.path}/roles/service"
  ignore_absent_fields = true

  data_json = jsonencode({
    scopes  = ["dashboards_read", "monitors_read"]
    ttl     = 3600
    max_ttl = 86400
  })
}

# The role Terraform itself reads. Each plan and each apply issues a
# credential and nothing revokes it early, so its leases are short, and it
# creates no API key (api_key_mode none): the caller already has one.
resource "vault_generic_endpoint" "role_terraform" {
  depends_on = [vault_generic_endpoint.config]

  path                 = "${vault_mount.datadog.path}/roles/terraform"
  ignore_absent_fields = true

  data_json = jsonencode({
    scopes       = ["monitors_read", "monitors_write"]
    api_key_mode = "none"
    ttl          = 300
    max_ttl      = 600
  })
}

# Credentials for this run only, never written to the state or a plan. Use
# them where Terraform accepts ephemeral values: a provider block (such as
# Datadog's, see README.md), a write-only argument, a provisioner. Opened at
# plan and again at apply; mount_id holds it back until the role exists.
# The provider does not revoke the lease when the run ends: it expires after
# the role's ttl, or with the provider's child token if that comes first.
ephemeral "vault_generic_secret" "datadog" {
  mount_id = vault_generic_endpoint.role_terraform.id
  path     = "${vault_mount.datadog.path}/creds/terraform"
}

# The same credentials through a data source: read at every plan and
# refresh, each read issues a new credential, and the state keeps its
# secrets (data, data_json) until the next read replaces them. No output
# shows them: it would change at every plan.
data "vault_generic_secret" "datadog" {
  depends_on = [vault_generic_endpoint.role_terraform]

  path = "${vault_mount.datadog.path}/creds/terraform"
}
