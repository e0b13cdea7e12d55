// Package e2e holds the end-to-end tests: the built plugin runs inside a real
// Vault server (started once by TestMain) and is driven through Vault's HTTP
// API and the vault CLI, with each test's Datadog played by an in-process
// emulator on loopback. TestHAFailover and TestChaos run their own servers
// from a config file, with integrated storage (cluster_test.go).
//
//	go test ./e2e
//	go test ./e2e -run TestChaos -v -chaos.cycles=500   # make chaos
//
// Vault is $VAULT_BIN, or whatever ../scripts/vault-bin.sh finds or builds.
package e2e
