# Build, test and run the Datadog secrets engine; `make help` lists the targets.

VERSION ?= v0.1.0-dev
MODULE  := github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog
# Vault reports this as the mount's running_plugin_version.
LDFLAGS := -X $(MODULE)/backend.Version=$(VERSION)

PLUGIN   := bin/plugins/vault-plugin-secrets-datadog
EMULATOR := bin/datadog-emulator

# make register / make upgrade: the Vault server's plugin_directory, and the
# mount to upgrade.
PLUGIN_DIR ?=
MOUNT      ?= datadog

# make release: where the artifacts go, and the platforms (os/arch,
# space-separated) to build instead of cmd/release's default list.
DIST      ?= dist
PLATFORMS ?=

CHAOS_CYCLES ?= 500
CHAOS_SEED   ?= 0

BENCH_DIR   := bin/bench
BENCH_FLAGS ?=

# make acceptance: flags for the suite ("-only creds/,revoke", "-skip watch",
# "-last-use-wait 10m"; bin/datadog-acceptance -h lists them). make
# acceptance-sweep: the prefix a run printed (vault-acc-<id>-).
ACCEPTANCE       := bin/datadog-acceptance
ACCEPTANCE_FLAGS ?=
RUN              ?=

.DEFAULT_GOAL := build
.PHONY: help build vault test chaos bench acceptance acceptance-sweep dev register upgrade release fmt vet clean

help:
	@echo "make build   plugin into $(PLUGIN) (VERSION=$(VERSION)) and $(EMULATOR)"
	@echo "make vault   print the path of a vault binary, building Vault once if needed"
	@echo "make test    unit and end-to-end tests (a real Vault server)"
	@echo "make chaos   the e2e chaos test, long: CHAOS_CYCLES=$(CHAOS_CYCLES) creds cycles under Datadog faults, plugin"
	@echo "             SIGKILLs and a Vault restart; prints a table of figures (CHAOS_SEED=N repeats a run)"
	@echo "make bench   benchmarks, long (~10 min): the engine in a dev and a raft Vault server against Vault's and Datadog's"
	@echo "             floors, mass expiry, memory and storage per lease; then go test -bench ./backend. BENCH_FLAGS passes"
	@echo "             flags (\"-latency 50ms\", \"-duration 1s -leases 200\"); $(BENCH_DIR)/datadog-bench -h lists them"
	@echo "make acceptance"
	@echo "             end-to-end scenarios through a real Vault server against the emulator, or against a real Datadog"
	@echo "             organisation when DD_API_KEY, DD_APP_KEY and DD_SITE are set (DD_SERVICE_ACCOUNT_ID, DD_ACCESS_TOKEN"
	@echo "             for the service-account and token-root scenarios; DD_RECORD=dir records the traffic); prints a table"
	@echo "             of scenarios, calls and leftovers, and of the facts the emulator assumes. ACCEPTANCE_FLAGS passes flags"
	@echo "make acceptance-sweep RUN=vault-acc-<id>-"
	@echo "             delete what a killed acceptance run left in the Datadog of DD_API_KEY/DD_APP_KEY/DD_SITE(/DD_API_URL)"
	@echo "make dev     Vault dev server with the plugin at datadog/, against the emulator"
	@echo "make register PLUGIN_DIR=dir VERSION=v1.2.3"
	@echo "             copy the plugin into the server's plugin_directory and register it in the Vault at"
	@echo "             VAULT_ADDR (sha256, version)"
	@echo "make upgrade PLUGIN_DIR=dir VERSION=v1.2.4 [MOUNT=$(MOUNT)]"
	@echo "             register VERSION, move the mount to it (secrets tune, plugin reload), print its"
	@echo "             running_plugin_version before and after"
	@echo "make release VERSION=v1.2.3 [PLATFORMS=\"linux/amd64 darwin/arm64\"] [DIST=$(DIST)]"
	@echo "             release archives (one zip per platform: plugin, LICENSE, README.md) and their SHA256SUMS"
	@echo "             in $(DIST)/, byte-identical for the same commit and version; VERSION needs a CHANGELOG.md section"
	@echo "make fmt | vet | clean"

build:
	go build -ldflags "$(LDFLAGS)" -o $(PLUGIN) ./cmd/vault-plugin-secrets-datadog
	go build -o $(EMULATOR) ./cmd/datadog-emulator

vault:
	@scripts/vault-bin.sh

# Vault is found or built first, so that its one-time build is not charged
# to the e2e tests' timeout and a failure to get it stops here, loudly.
test:
	vault_bin=$$(scripts/vault-bin.sh) && VAULT_BIN=$$vault_bin go test -count=1 -timeout 30m ./...

# TestChaos as make test runs it, but long; its table of figures goes to
# stdout. A run prints its seed: CHAOS_SEED repeats its draws.
chaos:
	vault_bin=$$(scripts/vault-bin.sh) && VAULT_BIN=$$vault_bin go test -count=1 -timeout 60m -run '^TestChaos$$' -v ./e2e \
		-chaos.cycles=$(CHAOS_CYCLES) -chaos.seed=$(CHAOS_SEED)

# The engine, the leased-secret floor plugin and the benchmark program are
# built into their own directory: a dev server loads every plugin of its
# plugin directory. The Go benchmarks of the engine's hot paths follow.
bench:
	go build -ldflags "$(LDFLAGS)" -o $(BENCH_DIR)/plugins/vault-plugin-secrets-datadog ./cmd/vault-plugin-secrets-datadog
	go build -o $(BENCH_DIR)/plugins/datadog-bench-floor ./cmd/datadog-bench/floorplugin
	go build -o $(BENCH_DIR)/datadog-bench ./cmd/datadog-bench
	vault_bin=$$(scripts/vault-bin.sh) && $(BENCH_DIR)/datadog-bench -vault $$vault_bin \
		-plugin-dir $(BENCH_DIR)/plugins -plugin-version $(VERSION) $(BENCH_FLAGS)
	go test -run '^$$' -bench . -benchmem ./backend

# The suite registers the plugin make build made, with its version. exec:
# Ctrl-C reaches the suite, which cleans up before it exits.
acceptance: build
	go build -o $(ACCEPTANCE) ./cmd/datadog-acceptance
	vault_bin=$$(scripts/vault-bin.sh) && exec $(ACCEPTANCE) -vault "$$vault_bin" -plugin $(PLUGIN) -plugin-version $(VERSION) $(ACCEPTANCE_FLAGS)

acceptance-sweep:
	@test -n "$(RUN)" || { echo "usage: make acceptance-sweep RUN=<the prefix the run printed, vault-acc-<id>->" >&2; exit 2; }
	go build -o $(ACCEPTANCE) ./cmd/datadog-acceptance
	exec $(ACCEPTANCE) sweep -run "$(RUN)"

dev:
	VERSION=$(VERSION) scripts/dev.sh

register: build
	PLUGIN_BIN=$(PLUGIN) VERSION=$(VERSION) PLUGIN_DIR=$(PLUGIN_DIR) scripts/register.sh register

upgrade: build
	PLUGIN_BIN=$(PLUGIN) VERSION=$(VERSION) PLUGIN_DIR=$(PLUGIN_DIR) MOUNT=$(MOUNT) scripts/register.sh upgrade

# cmd/release checks CHANGELOG.md, builds each platform reproducibly and
# zips it; without PLATFORMS it builds its default list.
release:
	go run ./cmd/release -version "$(VERSION)" -out "$(DIST)" $(if $(strip $(PLATFORMS)),-platforms "$(PLATFORMS)")

fmt:
	go fmt ./...

vet:
	go vet ./...

clean:
	rm -rf bin dist
