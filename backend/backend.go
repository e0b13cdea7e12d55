// Package backend is a Vault secrets engine that issues short-lived,
// least-privilege Datadog credentials and deletes them when their lease ends.
package backend

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
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
	newClient func(*datadogConfig, hclog.Logger) (datadogAPI, error)

	// marker is this mount's mark in the names of the credentials it
	// creates, so that tidying never touches another mount's.
	marker string

	lock    sync.RWMutex
	current *session

	// storage is the mount's storage, for the clean-up when it is disabled.
	storage logical.Storage

	// rootLock serialises the changes of the root credential: config
	// writes, rotations and their rollback.
	rootLock sync.Mutex
	// rootEndWarned is when a token root's coming end was last logged
	// (unix nanoseconds; token_root.go).
	rootEndWarned atomic.Int64

	// credsLock lets a config write or delete see every creds request in
	// flight: requests hold it shared from the configuration they read to
	// their record, config changes exclusively, so that none can check for
	// outstanding leases between a request's look at config and its record.
	credsLock sync.RWMutex

	// ownerKeys counts the engine's application keys per service account,
	// for the roles that spread them over several (pool.go).
	ownerKeys ownerIndex

	// sharedKeys is which lease holds which shared API key (shared_api_key.go).
	sharedKeys sharedKeyIndex
	// apiKeys is the organisation's API key count, for api_key_mode dynamic.
	apiKeys apiKeyCount

	// recordLocks are the records' locks (record.go).
	recordLocks recordLocks

	// issuedRecords caches the ids of records known to belong to a lease,
	// so that the rollback reads each such record once, not every minute.
	issuedRecords sync.Map

	started     time.Time
	tidyLock    sync.Mutex
	tidyRunning *tidyStatus // the running or last tidy
	tidyCancel  context.CancelFunc
	tidyDone    chan struct{} // closed when the running tidy returns
	tidyClosed  bool          // cleanup ran: no more tidies in this instance

	// roles caches roles for creds and renewals (see cachedRole).
	rolesLock       sync.Mutex
	roles           map[string]*datadogRole
	rolesGeneration uint64

	scopesLock    sync.Mutex
	scopes        map[string]bool
	scopesFetched time.Time

	watch watchState // the watch of leaked and idle credentials

	// trail posts the audit events of config's audit_events.
	trail auditTrail
}

// Factory returns a configured instance of the backend.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	b.marker = mountMarker(conf.BackendUUID)
	b.storage = conf.StorageView
	b.started = time.Now()
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
			SealWrapStorage: []string{configPath, sharedSecretPrefix},
			LocalStorage:    []string{recordPrefix, sharedSecretPrefix, tidyStatusPath, framework.WALPrefix},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b), pathConfigRotateRoot(b)},
			pathRoles(b),
			[]*framework.Path{pathCreds(b)},
			pathTidy(b),
			[]*framework.Path{pathWatchStatus(b)},
		),
		Secrets:        credentialSecrets(b),
		PeriodicFunc:   b.periodicFunc,
		Invalidate:     b.invalidate,
		Clean:          b.cleanup,
		RunningVersion: Version,
	}
	return b
}

// invalidate drops cached state derived from the configuration or the
// roles when another node (or a replicated write) changes them.
func (b *datadogBackend) invalidate(_ context.Context, key string) {
	switch {
	case key == configPath:
		b.reset()
	case strings.HasPrefix(key, rolePrefix):
		b.forgetRoles()
	}
}

func (b *datadogBackend) reset() {
	b.lock.Lock()
	b.current = nil
	b.lock.Unlock()
	b.scopesLock.Lock()
	b.scopes = nil
	b.scopesLock.Unlock()
}

// session is the configured identity and a client acting as it: read from
// storage and built once per configuration, so that a request reads config
// at most once.
type session struct {
	cfg    *datadogConfig
	client datadogAPI
}

// session returns the cached session, building it from the stored
// configuration on first use. A nil session with a nil error means the
// engine is not configured.
func (b *datadogBackend) session(ctx context.Context, s logical.Storage) (*session, error) {
	b.lock.RLock()
	current := b.current
	b.lock.RUnlock()
	if current != nil {
		return current, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if b.current != nil {
		return b.current, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	client, err := b.newClient(cfg, b.Logger())
	if err != nil {
		return nil, err
	}
	b.current = &session{cfg: cfg, client: client}
	return b.current, nil
}

const backendHelp = `
The Datadog secrets engine issues short-lived, least-privilege Datadog
credentials. Each read of creds/<role> creates a new credential of the
role's credential_type and returns it with a Vault lease; when the lease is
revoked or expires the credential is deleted in Datadog.

Credential types: application_key (an application key of the configured
identity, limited to the role's scopes, with a per-lease API key unless
api_key_mode says otherwise), service_account_application_key (the same,
owned by a service account), personal_access_token and service_access_token
(access_token and access_token_id, sent as Authorization: Bearer or as
DD_APP_KEY without an API key, which Datadog itself expires at expires_at),
and api_key (an API key alone, for Datadog Agents and intake).

Configure the engine with the API and application keys of the Datadog
identity it acts as (config), define roles with the scopes each consumer
needs (roles/<name>), then read credentials (creds/<name>).
`
