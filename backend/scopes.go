package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// checkScopes returns a message for the operator when a scope is not a
// Datadog permission name, so the role is refused before Datadog refuses
// every creds read with "Invalid scopes".
func (b *datadogBackend) checkScopes(ctx context.Context, s logical.Storage, scopes []string) (string, error) {
	known, err := b.knownScopes(ctx, s)
	if err != nil {
		return "", err
	}
	var unknown []string
	for _, scope := range scopes {
		if !known[scope] {
			unknown = append(unknown, scope)
		}
	}
	if len(unknown) == 0 {
		return "", nil
	}
	parts := make([]string, len(unknown))
	for i, scope := range unknown {
		parts[i] = fmt.Sprintf("%q", scope)
		if close := closestScopes(scope, known, 3); len(close) > 0 {
			parts[i] += " (did you mean " + strings.Join(close, ", ") + "?)"
		}
	}
	return "scopes: unknown Datadog permission " + strings.Join(parts, "; ") +
		"; valid names are those of GET /api/v2/permissions, such as dashboards_read", nil
}

// scopesProblem enforces the mount's guardrail, config's allowed_scopes,
// on a credential of kind with these scopes: it names the scopes outside
// it, or says that an unscoped key (every permission of its owner) is more
// than it allows. It returns "" when the credential is within it.
func (c *datadogConfig) scopesProblem(kind credentialKind, scopes []string) string {
	if len(c.AllowedScopes) == 0 || !kind.scoped {
		return ""
	}
	allowed := strings.Join(c.AllowedScopes, ", ")
	if len(scopes) == 0 {
		return fmt.Sprintf("unscoped keys carry every permission of their owner, more than this mount's allowed_scopes (%s) permit", allowed)
	}
	var outside []string
	for _, scope := range scopes {
		if !slices.Contains(c.AllowedScopes, scope) {
			outside = append(outside, scope)
		}
	}
	if len(outside) == 0 {
		return ""
	}
	return fmt.Sprintf("scopes %s are outside this mount's allowed_scopes (%s)", strings.Join(outside, ", "), allowed)
}

// knownScopes is the organisation's permission list, fetched live and cached
// per mount. When the engine is not configured yet, or its identity may not
// list permissions, the list built from Datadog's API specification is used.
func (b *datadogBackend) knownScopes(ctx context.Context, s logical.Storage) (map[string]bool, error) {
	b.scopesLock.Lock()
	defer b.scopesLock.Unlock()
	if b.scopes != nil && time.Since(b.scopesFetched) < scopeCacheTTL {
		return b.scopes, nil
	}

	sess, err := b.session(ctx, s)
	if err != nil {
		return nil, err
	}
	names := permissions.Names
	if sess != nil {
		live, err := sess.client.PermissionNames(ctx)
		switch {
		case err == nil && len(live) > 0:
			names = live
		case httpStatus(err) == http.StatusForbidden || httpStatus(err) == http.StatusUnauthorized:
			b.Logger().Warn("the configured identity may not list Datadog permissions; validating scopes against the built-in list", "error", err)
		case err != nil:
			return nil, fmt.Errorf("error listing Datadog permissions to validate scopes: %w", err)
		}
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	b.scopes, b.scopesFetched = known, time.Now()
	return known, nil
}

// closestScopes suggests up to max known names within a small edit distance.
func closestScopes(scope string, known map[string]bool, max int) []string {
	type candidate struct {
		name string
		dist int
	}
	var found []candidate
	limit := len(scope)/3 + 1
	for name := range known {
		if d := editDistance(scope, name); d <= limit {
			found = append(found, candidate{name, d})
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].dist != found[j].dist {
			return found[i].dist < found[j].dist
		}
		return found[i].name < found[j].name
	})
	var out []string
	for i := 0; i < len(found) && i < max; i++ {
		out = append(out, found[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
