package backend

import (
	"sort"
	"strings"
	"time"
)

// credentialKind is what a role's credential_type issues. The mechanism
// (create under a WAL entry, renew, revoke, roll back) is shared; only this
// data varies between kinds.
type credentialKind struct {
	name        string // the credential_type, and the kind of the lease's main Datadog object
	description string
	// serviceAccount: owned by the role's service_account_id rather than by
	// the configured identity.
	serviceAccount bool
	// scoped: limited to the role's scopes (all but API keys, which have none).
	scoped bool
	// withAPIKey: an application key, so the role's api_key_mode applies.
	withAPIKey bool
	// Access tokens carry a native expiry Datadog enforces itself, within
	// these bounds from the time of creation (0: no bound).
	token                bool
	minExpiry, maxExpiry time.Duration
}

const year = 365 * 24 * time.Hour

var credentialKinds = map[string]credentialKind{
	kindApplicationKey: {
		name:        kindApplicationKey,
		description: "a scoped application key owned by the configured identity",
		scoped:      true, withAPIKey: true,
	},
	kindServiceAccountApplicationKey: {
		name:           kindServiceAccountApplicationKey,
		description:    "a scoped application key owned by the role's service account",
		serviceAccount: true, scoped: true, withAPIKey: true,
	},
	kindServiceAccessToken: {
		name:           kindServiceAccessToken,
		description:    "a scoped access token of the role's service account, expiring in Datadog at the end of the lease's max TTL",
		serviceAccount: true, scoped: true, token: true, maxExpiry: year,
	},
	kindPersonalAccessToken: {
		name:        kindPersonalAccessToken,
		description: "a scoped personal access token of the configured user, expiring in Datadog no sooner than 24 h ahead",
		scoped:      true, token: true, minExpiry: 24 * time.Hour, maxExpiry: year,
	},
	kindAPIKey: {
		name:        kindAPIKey,
		description: "an API key alone, for Datadog Agents and intake",
	},
}

// credentialTypeNames lists the kinds in a stable order for help and errors.
func credentialTypeNames() []string {
	names := make([]string, 0, len(credentialKinds))
	for name := range credentialKinds {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func credentialTypesHelp() string {
	var b strings.Builder
	for _, name := range credentialTypeNames() {
		b.WriteString(name + " (" + credentialKinds[name].description + "); ")
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// objectFields names the response fields that carry an object's secret and
// ID: the same names for the same meaning across kinds, so one Vault Agent
// template works for every role of a kind.
var objectFields = map[string]struct{ secret, id string }{
	kindApplicationKey:               {"application_key", "application_key_id"},
	kindServiceAccountApplicationKey: {"application_key", "application_key_id"},
	kindPersonalAccessToken:          {"access_token", "access_token_id"},
	kindServiceAccessToken:           {"access_token", "access_token_id"},
	kindAPIKey:                       {"api_key", "api_key_id"},
}

// expiryGrace is added to a token's expiry beyond the lease's max TTL, so
// that Datadog never kills a token while its lease is still valid.
const expiryGrace = 10 * time.Minute

// tokenExpiry is when a new token of the kind should expire in Datadog: at
// the end of the lease's longest possible life, within Datadog's bounds.
func (k credentialKind) tokenExpiry(now time.Time, maxLease time.Duration) time.Time {
	lifetime := maxLease + expiryGrace
	if k.minExpiry > 0 && lifetime < k.minExpiry+expiryGrace {
		lifetime = k.minExpiry + expiryGrace
	}
	if k.maxExpiry > 0 && lifetime > k.maxExpiry {
		lifetime = k.maxExpiry
	}
	return now.Add(lifetime).UTC().Truncate(time.Second)
}
