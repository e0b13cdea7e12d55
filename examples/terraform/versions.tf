terraform {
  # 1.10: ephemeral resources and ephemeral input variables.
  required_version = ">= 1.10"

  required_providers {
    vault = {
      source = "hashicorp/vault"
      # 5.8.0 added the ephemeral vault_generic_secret.
      version = ">= 5.8.0, < 6.0.0"
    }
  }
}
