package emulator

import (
	"strings"
	"time"
)

// Personal access tokens belong to users; service access tokens to service
// accounts. Both authenticate alone (as bearer tokens), are always scoped,
// and may expire; they differ in prefix, owner and expiry rules.
var (
	personalAccessTokens = accessTokenKind(KindPersonalAccessToken, "personal_access_tokens", "ddpat", "users",
		expiryRule{required: true, min: 24 * time.Hour, tooSoon: "expires_at must be at least 24 hours in the future"})
	serviceAccessTokens = accessTokenKind(KindServiceAccessToken, "service_access_tokens", "ddsat", "service_account",
		expiryRule{tooSoon: "expires_at must be in the future"})
)

// maxTokenLifetime bounds expires_at for both kinds: one year.
const maxTokenLifetime = 365 * 24 * time.Hour

// expiryRule is how a kind of token takes expires_at at creation. It is
// fixed afterwards.
type expiryRule struct {
	required bool
	min      time.Duration // how far ahead expires_at must at least be (and always in the future)
	tooSoon  string        // the 400 message when it is not
}

func (rule expiryRule) check(at *time.Time, now time.Time) string {
	switch {
	case at == nil && rule.required:
		return "expires_at is required"
	case at == nil:
		return ""
	case !at.After(now) || at.Before(now.Add(rule.min)):
		return rule.tooSoon
	case at.After(now.Add(maxTokenLifetime)):
		return "expires_at must be at most one year in the future"
	}
	return ""
}

func accessTokenKind(kind, jsonType, prefix, ownerType string, expiry expiryRule) *keyKind {
	return &keyKind{
		kind:      kind,
		jsonType:  jsonType,
		notFound:  "Access token not found",
		newSecret: func() string { return newTokenSecret(prefix) },
		sorts:     []string{"created_at", "expires_at", "last_used_at", "leaked", "name"},
		revocable: true,
		meta: func(total int) map[string]any {
			return map[string]any{"page": map[string]any{"total_filtered_count": total}}
		},
		attributes: func(k *storedKey, v view, _ time.Time) map[string]any {
			a := map[string]any{
				"name":           k.Name,
				"created_at":     formatTokenTime(&k.CreatedAt),
				"expires_at":     formatTokenTime(k.ExpiresAt),
				"public_portion": publicPortion(k.Secret),
				"scopes":         k.Scopes,
			}
			if v == viewCreated {
				a["key"] = k.Secret // shown once
				return a
			}
			a["last_used_at"] = formatTokenTime(k.LastUsedAt)
			if v == viewUpdated || k.ModifiedAt.After(k.CreatedAt) {
				a["modified_at"] = formatTokenTime(&k.ModifiedAt)
			}
			return a
		},
		relationships: func(k *storedKey) map[string]any {
			rel := map[string]any{"owned_by": relationship(ownerType, k.OwnerID)}
			// Recorded answers of clean tokens have no leak_information;
			// the spec gives it to tokens, pointing to the leak.
			if k.Leak != nil {
				rel["leak_information"] = leakRelationship(k)
			}
			return rel
		},
		apply: func(k *storedKey, attrs keyAttributes, creating bool, now time.Time) string {
			if creating {
				if problem := expiry.check(attrs.ExpiresAt.value, now); problem != "" {
					return problem
				}
			}
			scopes := attrs.Scopes
			if creating || scopes.set {
				switch {
				case len(scopes.value) == 0:
					return "scopes must hold at least one scope"
				case !allKnown(scopes.value):
					return "Invalid scopes"
				}
				k.Scopes = scopes.value
			}
			if creating && attrs.ExpiresAt.value != nil {
				at := attrs.ExpiresAt.value.UTC()
				k.ExpiresAt = &at
			}
			return ""
		},
	}
}

// formatTokenTime writes token timestamps as the token service does (as
// recorded): RFC 3339 in UTC with "Z" and only the digits needed.
func formatTokenTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// isTokenSecret tells access tokens from application keys by their prefix.
func isTokenSecret(s string) bool {
	return strings.HasPrefix(s, "ddpat_") || strings.HasPrefix(s, "ddsat_")
}

// publicPortion is the part of a token Datadog shows after creation: its
// prefix and identifier, without the secret.
func publicPortion(secret string) string {
	prefix, rest, _ := strings.Cut(secret, "_")
	public, _, _ := strings.Cut(rest, "_")
	return prefix + "_" + public
}
