//go:build tools

// Package vaultbuild pins the Vault server version built by ../build-vault.sh.
package vaultbuild

import _ "github.com/hashicorp/vault"
