package emulator

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"time"
)

// timeLayout is how Datadog writes timestamps: RFC 3339 with microseconds
// and a numeric offset ("2022-05-12T09:52:03.065338+00:00"). Clients parse
// them strictly, so every timestamp goes through formatTime.
const timeLayout = "2006-01-02T15:04:05.000000-07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// formatOptionalTime renders a time that may not have happened as null.
func formatOptionalTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

type role struct {
	id        string
	name      string
	createdAt time.Time
}

type user struct {
	id        string
	name      string
	email     string
	createdAt time.Time
	role      role
}

// relationship is a JSON:API to-one relationship.
func relationship(typ, id string) map[string]any {
	return map[string]any{"data": ref(typ, id)}
}

func ref(typ, id string) map[string]any {
	return map[string]any{"type": typ, "id": id}
}

// userObject renders a user as Datadog does in /api/v2/current_user and
// user lists. Datadog leaves the org relationship out when the user is an
// included resource of another object (as recorded), hence withOrg.
func (e *Emulator) userObject(u user, withOrg bool) map[string]any {
	email := strings.ToLower(u.email)
	relationships := map[string]any{
		"roles": map[string]any{"data": []any{ref("roles", u.role.id)}},
	}
	if withOrg {
		relationships["org"] = relationship("orgs", e.orgID)
	}
	return map[string]any{
		"type": "users",
		"id":   u.id,
		"attributes": map[string]any{
			"name":                  u.name,
			"handle":                email,
			"email":                 email,
			"created_at":            formatTime(u.createdAt),
			"modified_at":           formatTime(u.createdAt),
			"icon":                  gravatar(email),
			"title":                 nil,
			"verified":              true,
			"service_account":       false,
			"disabled":              false,
			"allowed_login_methods": []string{},
			"status":                "Active",
		},
		"relationships": relationships,
	}
}

func roleObject(r role) map[string]any {
	return map[string]any{
		"type": "roles",
		"id":   r.id,
		"attributes": map[string]any{
			"name":        r.name,
			"managed":     true,
			"created_at":  formatTime(r.createdAt),
			"modified_at": formatTime(r.createdAt),
		},
	}
}

// includedUsers renders the users with the given ids and their roles, for a
// JSON:API "included" member.
func (e *Emulator) includedUsers(ids ...string) []any {
	included := []any{}
	for _, id := range ids {
		// The seeded admin is the only user; keys are owned by no one else.
		if id == e.user.id {
			return append(included, e.userObject(e.user, false), roleObject(e.user.role))
		}
	}
	return included
}

// gravatar is the icon URL Datadog gives users without a picture.
func gravatar(email string) string {
	sum := md5.Sum([]byte(email))
	return "https://secure.gravatar.com/avatar/" + hex.EncodeToString(sum[:]) + "?s=48&d=retro"
}
