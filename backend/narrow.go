package backend

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Request-time narrowing: a creds request may ask for fewer scopes and a
// shorter lease than its role grants, never for more, so that a consumer
// (an AI agent with one task, say) holds exactly what the task needs.

// narrowFields are the creds path's optional request fields. Query: a
// read takes them as query parameters (vault read ... scopes=x), a write
// in its body.
func narrowFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"scopes": {
			Type: framework.TypeCommaStringSlice,
			Description: "Narrow the credential to these scopes: a subset of the role's (any Datadog permission names " +
				"for an unscoped role). Default: the role's scopes. Not for api_key roles.",
			Query: true,
		},
		"ttl": {
			Type: framework.TypeDurationSecond,
			Description: "Lease duration of this credential, and of its renewals without an increment: no longer than " +
				"the role's ttl (the mount's default lease TTL when the role has none). Default (or 0): the role's.",
			Query: true,
		},
	}
}

// withNarrowing adds the narrowing fields to a path's own.
func withNarrowing(fields map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	maps.Copy(fields, narrowFields())
	return fields
}

// issue is what one creds request issues: the role's grant, or less.
type issue struct {
	scopes   []string
	ttl      time.Duration // 0: the role's
	narrowed bool          // scopes were asked for
}

// narrow reads the request's scopes and ttl against the role. It returns
// a message for a 400 answer when they ask for more than the role grants.
func (b *datadogBackend) narrow(ctx context.Context, s logical.Storage, d *framework.FieldData, roleName string, role *datadogRole) (issue, string, error) {
	out := issue{scopes: role.Scopes}
	kind := role.kind()
	if raw, ok := d.GetOk("scopes"); ok {
		asked := normalizeScopes(raw.([]string))
		switch {
		case !kind.scoped:
			return out, fmt.Sprintf("scopes do not apply to role %q: a %s carries no permissions of its own", roleName, describeKind(kind.name)), nil
		case len(asked) == 0:
			return out, "scopes is empty: name the scopes the credential needs, or leave scopes out to get the role's", nil
		case len(role.Scopes) > 0:
			if extra := notCovered(asked, role.Scopes); len(extra) > 0 {
				what := "scopes " + strings.Join(extra, ", ") + " are"
				if len(extra) == 1 {
					what = "scope " + extra[0] + " is"
				}
				return out, fmt.Sprintf("%s not granted by role %q (its scopes: %s); ask for a subset of them",
					what, roleName, strings.Join(role.Scopes, ", ")), nil
			}
		default:
			// An unscoped role grants every permission of the owner: any
			// real permission name narrows it.
			if msg, err := b.checkScopes(ctx, s, asked); msg != "" || err != nil {
				return out, msg, err
			}
		}
		out.scopes, out.narrowed = asked, true
	}
	if raw, ok := d.GetOk("ttl"); ok {
		ttl := time.Duration(raw.(int)) * time.Second
		limit := b.roleTTL(role)
		// The framework refuses a negative one.
		if ttl > limit {
			return out, fmt.Sprintf("ttl %s is longer than role %q grants (%s); ask for %s or less", ttl, roleName, limit, limit), nil
		}
		out.ttl = ttl
	}
	return out, "", nil
}

// roleTTL is the lease duration a plain creds read of the role gets.
func (b *datadogBackend) roleTTL(role *datadogRole) time.Duration {
	ttl := role.TTL
	if ttl == 0 {
		ttl = b.System().DefaultLeaseTTL()
	}
	if role.MaxTTL > 0 && ttl > role.MaxTTL {
		ttl = role.MaxTTL
	}
	return min(ttl, b.System().MaxLeaseTTL())
}

// binding is what the lease records it was issued under: the role's
// binding for the credential's owner, narrowed as the request asked.
func (i issue) binding(bound roleBinding) roleBinding {
	if i.narrowed {
		bound.Scopes = slices.Sorted(slices.Values(i.scopes))
		bound.Narrowed = true
	}
	return bound
}

// leaseTTL is a lease's duration at issue and at each renewal without an
// increment: the role's ttl, or what the request narrowed it to, should
// the role's now be shorter.
func leaseTTL(role *datadogRole, narrowed time.Duration) time.Duration {
	if narrowed > 0 && (role.TTL == 0 || narrowed < role.TTL) {
		return narrowed
	}
	return role.TTL
}

// narrowedTTL reads back the ttl a lease was narrowed to (0: none).
func narrowedTTL(secret *logical.Secret) time.Duration {
	var seconds int64
	if raw, ok := secret.InternalData["ttl"]; ok && mapToStruct(raw, &seconds) == nil && seconds > 0 {
		return time.Duration(seconds) * time.Second
	}
	return 0
}
