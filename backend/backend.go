// Package backend is a Vault secrets engine that issues short-lived,
// least-privilege Datadog credentials and deletes them when their lease ends.
package backend

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version, set at build time with
// -ldflags "-X <module>/backend.Version=v1.2.3".
var Version = "v0.0.0-dev"

// operationPrefix names this engine's operations in Vault's OpenAPI document.
const operationPrefix = "datadog"

// scopeCacheTTL bounds how long the organisation's permission list is reused
// for role validation before it is asked for again.
const scopeCacheTTL = 10 * time.Minute

type datadogBackend struct {
	*framework.Backend

	// newClient builds the Datadog adapter; tests may replace it.
	newClient func(*datadogConfig) (datadogAPI, error)

	lock   sync.RWMutex
	client datadogAPI

	scopesLock    sync.Mutex
	scopes        map[string]bool
	scopesFetched time.Time
}

// Factory returns a configured instance of the backend.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend() *datadogBackend {
	b := &datadogBackend{newClient: newDatadogClient}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configPath},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathRoles(b),
			[]*framework.Path{pathCreds(b)},
		),
		Secrets:           credentialSecrets(b),
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge,
		Invalidate:        b.invalidate,
		RunningVersion:    Version,
	}
	return b
}

// invalidate drops cached state derived from the configuration when another
// node (or a replicated write) changes it.
func (b *datadogBackend) invalidate(_ context.Context, key string) {
	if key == configPath {
		b.reset()
	}
}

func (b *datadogBackend) reset() {
	b.lock.Lock()
	b.client = nil
	b.lock.Unlock()
	b.scopesLock.Lock()
	b.scopes = nil
	b.scopesLock.Unlock()
}

// getClient returns the cached Datadog client, building it from the stored
// configuration on first use. A nil client with a nil error means the engine
// is not configured.
func (b *datadogBackend) getClient(ctx context.Context, s logical.Storage) (datadogAPI, error) {
	b.lock.RLock()
	client := b.client
	b.lock.RUnlock()
	if client != nil {
		return client, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	if b.client, err = b.newClient(cfg); err != nil {
		return nil, err
	}
	return b.client, nil
}

const backendHelp = `
The Datadog secrets engine issues short-lived, least-privilege Datadog
credentials. Each read of creds/<role> creates a new application key limited
to the role's scopes (and, by default, its own API key) and returns it with a
Vault lease; when the lease is revoked or expires the keys are deleted in
Datadog.

Configure the engine with the API and application keys of the Datadog
identity that owns the issued keys (config), define roles with the scopes
each consumer needs (roles/<name>), then read credentials (creds/<name>).
`
