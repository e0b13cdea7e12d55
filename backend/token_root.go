package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// An access_token root (a service access token of a service account) makes
// every Datadog call of the engine a call authenticated with an access
// token, which Datadog's containment rules hold (DataDog/documentation
// #39105, "Restrictions" on the access token pages): such a call cannot
// create or update application keys, creates tokens only within its own
// scopes, and none whose life extends past its own expiry; a breach is 403.
// The engine checks them before it calls Datadog, so that a role that could
// only fail is refused with a reason, and nothing is left half made.
//
// The expiry rule also bounds the root itself: a rotation makes the next
// root with the current one, so it cannot outlive it. The current root's
// expiry is the engine's hard end; only a token made by another identity,
// written to config, moves it.

// rootEndLeadTime is how long before a token root's hard end the engine
// starts to warn (logs, config reads and writes, rotations).
const rootEndLeadTime = 14 * 24 * time.Hour

// minRootLease is the shortest lease the engine issues before a token
// root's hard end: closer to it, creds are refused.
const minRootLease = time.Minute

// errRootContained: Datadog would refuse the rotation of a token root.
var errRootContained = errors.New("the root access token cannot be rotated as asked")

func (c *datadogConfig) tokenRoot() bool { return c.AccessToken != "" }

// rootEnd is a token root's hard end: its expiry in Datadog, which no
// rotation moves. Zero for an app_key root, and for a token without expiry
// (or not identified yet).
func (c *datadogConfig) rootEnd() time.Time {
	if !c.tokenRoot() || c.RootExpiresAt == nil {
		return time.Time{}
	}
	return *c.RootExpiresAt
}

// leaseEndLimit is the latest any lease may end under a token root: a
// token's expiry grace before the root's end, so that the root can still
// delete the lease's credential when the lease ends. Zero: no limit.
func (c *datadogConfig) leaseEndLimit() time.Time {
	end := c.rootEnd()
	if end.IsZero() {
		return end
	}
	return end.Add(-expiryGrace)
}

// rootScopesUnknown: a token root whose scopes the engine has not read
// (configs written before it stored them); config writes read them.
func (c *datadogConfig) rootScopesUnknown() bool {
	return c.tokenRoot() && c.RootTokenScopes == nil
}

// containmentProblem says why a token root cannot issue a credential of
// kind with these scopes, or "". Datadog's answer would be 403.
func (c *datadogConfig) containmentProblem(kind credentialKind, scopes []string) string {
	if !c.tokenRoot() {
		return ""
	}
	switch {
	case kind.withAPIKey:
		return fmt.Sprintf("credential_type %s issues application keys, and the engine's root is an access token (config access_token): "+
			"Datadog refuses to let a call made with an access token create an application key. Use credential_type service_access_token "+
			"(a token of a service account, limited to the same scopes, which tools take as DD_APP_KEY without an API key), "+
			"or write config an application key root (app_key with api_key)", kind.name)
	case kind.name == kindPersonalAccessToken:
		return "credential_type personal_access_token issues a personal access token of the engine's identity, and the engine's root is a " +
			"service access token (config access_token): Datadog's rules let a service access token make service access tokens, and the " +
			"engine takes it that one may not make a personal access token. Use credential_type service_access_token, or write config " +
			"an application key root (app_key with api_key)"
	case kind.token && c.RootTokenScopes != nil:
		if wider := notCovered(scopes, c.RootTokenScopes); len(wider) > 0 {
			return fmt.Sprintf("scopes %s are not among the scopes of the engine's root access token (%s): Datadog lets a call made "+
				"with an access token create tokens only within its own scopes. Leave them out, or write config an access_token that holds them",
				strings.Join(wider, ", "), strings.Join(c.RootTokenScopes, ", "))
		}
	}
	return ""
}

// rootEndProblem refuses creds once a token root is too close to its hard
// end for any lease to end before it.
func (c *datadogConfig) rootEndProblem(now time.Time) string {
	limit := c.leaseEndLimit()
	if limit.IsZero() || limit.Sub(now) >= minRootLease {
		return ""
	}
	return fmt.Sprintf("the engine's root access token expires at %s, and no credential may outlive it (nor a lease end after the root "+
		"can no longer revoke it); nothing was created in Datadog. Write config a new access_token made by another identity, or an app_key root",
		c.rootEnd().Format(time.RFC3339))
}

// capExpiry holds a new token's Datadog expiry to the root's end.
func (c *datadogConfig) capExpiry(t time.Time) time.Time {
	if end := c.rootEnd(); !end.IsZero() && t.After(end) {
		return end
	}
	return t
}

// capLease shortens a new lease's max TTL (0: the mount's maxTTL) so that it
// ends by leaseEndLimit, and says so in a warning; "" when it needs none.
func (c *datadogConfig) capLease(maxTTL, mountMax time.Duration, now time.Time) (time.Duration, string) {
	limit := c.leaseEndLimit()
	if limit.IsZero() {
		return maxTTL, ""
	}
	effective := maxTTL
	if effective <= 0 || effective > mountMax {
		effective = mountMax
	}
	until := limit.Sub(now).Truncate(time.Second)
	if effective <= until {
		return maxTTL, ""
	}
	return until, fmt.Sprintf("this lease's max_ttl is %s, not %s: the engine's root access token expires at %s, no credential may "+
		"outlive it and the root must still revoke this one when its lease ends; leases' max_ttl shrinks as the root ages. "+
		"Write config a new access_token made by another identity (or an app_key root) to lift the limit",
		until, effective, c.rootEnd().Format(time.RFC3339))
}

// rootEndWarning is the warning shown from rootEndLeadTime before a token
// root's hard end, or "".
func (c *datadogConfig) rootEndWarning(now time.Time) string {
	end := c.rootEnd()
	switch {
	case end.IsZero() || end.Sub(now) > rootEndLeadTime:
		return ""
	case !now.Before(end):
		return fmt.Sprintf("the engine's root access token expired at %s: every Datadog call of the engine fails. Write config a new "+
			"access_token made by another identity, or an app_key root", end.Format(time.RFC3339))
	}
	return fmt.Sprintf("the engine's root access token expires at %s (in %s), and no rotation moves that end: a token cannot make one "+
		"that outlives it. Before then, write config a new access_token made by another identity (a person's or another service "+
		"account's), or an app_key root; leases end by then", end.Format(time.RFC3339), end.Sub(now).Round(time.Hour))
}

// warnRootEnd logs rootEndWarning from the periodic function: once a day,
// hourly in the last day.
func (b *datadogBackend) warnRootEnd(cfg *datadogConfig) {
	now := time.Now()
	msg := cfg.rootEndWarning(now)
	if msg == "" {
		return
	}
	every := 24 * time.Hour
	if cfg.rootEnd().Sub(now) < 24*time.Hour {
		every = time.Hour
	}
	if last := b.rootEndWarned.Load(); last != 0 && now.Sub(time.Unix(0, last)) < every {
		return
	}
	b.rootEndWarned.Store(now.UnixNano())
	b.Logger().Warn(msg, "root_expires_at", cfg.rootEnd().Format(time.RFC3339), "root_key_id", cfg.RootKeyID)
}

// rotationScopesProblem refuses a rotation whose new root token would hold
// scopes the current one lacks (known: scopes of the current root).
func rotationScopesProblem(known, asked []string) error {
	if known == nil {
		return nil
	}
	if wider := notCovered(asked, known); len(wider) > 0 {
		return fmt.Errorf("%w: root_scopes %s are not among the current root token's scopes (%s), and Datadog lets a token make only "+
			"tokens within its own scopes. Set root_scopes to a subset of them, or leave it unset (a token root keeps its own scopes)",
			errRootContained, strings.Join(wider, ", "), strings.Join(known, ", "))
	}
	return nil
}

// rootRoleWarnings names the roles that cannot issue under cfg's token
// root, for a config write's answer.
func (b *datadogBackend) rootRoleWarnings(ctx context.Context, s logical.Storage, cfg *datadogConfig) ([]string, error) {
	var warnings []string
	if msg := cfg.rootEndWarning(time.Now()); msg != "" {
		warnings = append(warnings, msg)
	}
	if !cfg.tokenRoot() {
		return warnings, nil
	}
	names, err := s.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	for _, name := range names {
		role, err := getRole(ctx, s, name)
		if err != nil || role == nil {
			continue
		}
		if msg := cfg.containmentProblem(role.kind(), role.Scopes); msg != "" {
			warnings = append(warnings, fmt.Sprintf("role %q cannot issue credentials under this root; its creds are refused: %s", name, msg))
		}
	}
	return warnings, nil
}

// rootEndRoleWarning warns a role write whose leases would last past what
// a token root allows them: they will be cut short.
func (b *datadogBackend) rootEndRoleWarning(ctx context.Context, s logical.Storage, role *datadogRole) (string, error) {
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil {
		return "", err
	}
	limit := sess.cfg.leaseEndLimit()
	if limit.IsZero() {
		return "", nil
	}
	maxTTL := role.MaxTTL
	if mount := b.System().MaxLeaseTTL(); maxTTL <= 0 || maxTTL > mount {
		maxTTL = mount
	}
	if left := time.Until(limit); maxTTL > left {
		return fmt.Sprintf("leases of this role will not last their max_ttl %s: the engine's root access token expires at %s, and every "+
			"lease ends %s before it (less as the root ages); a token root's end moves only when config gets a new access_token made by "+
			"another identity", maxTTL, sess.cfg.rootEnd().Format(time.RFC3339), expiryGrace), nil
	}
	return "", nil
}
