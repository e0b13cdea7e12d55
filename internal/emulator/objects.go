package emulator

import (
	"crypto/md5"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
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

// org is the organisation: everything the emulator keeps, and what the
// state file holds.
type org struct {
	ID      string                `json:"id"`
	AdminID string                `json:"admin_id"` // the seeded user
	APIKey  string                `json:"api_key"`  // seeded secrets, also in Keys unless deleted
	AppKey  string                `json:"app_key"`
	Users   map[string]*user      `json:"users"` // service accounts included
	Roles   map[string]*role      `json:"roles"`
	Keys    map[string]*storedKey `json:"keys"` // every kind; revoked tokens included
	Seq     int                   `json:"seq"`  // creation counter of keys
	// ClockAdvance is the emulator clock's lead over the real one.
	ClockAdvance time.Duration `json:"clock_advance"`
	// OneTimeReadOff: application keys stay readable (see Options).
	OneTimeReadOff bool `json:"one_time_read_off,omitempty"`
	// MaxAPIKeys is the organisation's API key cap (see Options); 0 in a
	// state file written before there was one: Datadog's default.
	MaxAPIKeys int `json:"max_api_keys,omitempty"`
	// APIKeysPeak is the most API keys held at once (see APIKeyPeak).
	APIKeysPeak int `json:"api_keys_peak,omitempty"`
	// Events posted (POST /api/v1/events), oldest first, and their id counter.
	Events   []Event `json:"events,omitempty"`
	EventSeq int64   `json:"event_seq,omitempty"`
}

type user struct {
	ID             string    `json:"id"`
	Name           *string   `json:"name"` // null when created without one, as recorded
	Email          string    `json:"email"`
	Title          *string   `json:"title"`
	ServiceAccount bool      `json:"service_account"`
	Verified       bool      `json:"verified"` // invited users are not until they log in
	Disabled       bool      `json:"disabled"`
	RoleIDs        []string  `json:"role_ids"`
	CreatedAt      time.Time `json:"created_at"`
	ModifiedAt     time.Time `json:"modified_at"`
}

func (u *user) status() string {
	switch {
	case u.Disabled:
		return "Disabled"
	case !u.Verified:
		return "Pending"
	}
	return "Active"
}

// handle is the email for people; service accounts have their id (recorded).
func (u *user) handle() string {
	if u.ServiceAccount {
		return u.ID
	}
	return u.Email
}

type role struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Managed     bool      `json:"managed"` // Datadog's own roles
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
	ModifiedAt  time.Time `json:"modified_at"`
}

// adminOnly approximates what separates Datadog's Admin role from its
// Standard role: managing the organisation, its users, service accounts
// and org-wide keys, and billing.
var adminOnly = []string{
	"api_keys_delete", "api_keys_write", "billing_edit", "org_app_keys_read", "org_app_keys_write",
	"org_management", "service_account_write", "usage_edit", "user_access_invite", "user_access_manage",
}

// sensitiveReads are reads the Read Only role does not get.
var sensitiveReads = []string{"api_keys_read", "audit_logs_read", "billing_read", "usage_read"}

// defaultRolePermissions are what Datadog gives a new role unless told
// otherwise (default_permissions_opt_out), as recorded in 2023.
var defaultRolePermissions = []string{
	"dashboards_read", "monitors_read", "apm_read", "incident_read",
	"rum_apps_read", "notebooks_read", "slos_read", "ci_visibility_read",
}

// seededRoles are Datadog's managed roles. The Admin role comes first: the
// seeded user gets it.
func seededRoles() []*role {
	var standard, readOnly []string
	for _, p := range permissions.Names {
		if slices.Contains(adminOnly, p) {
			continue
		}
		standard = append(standard, p)
		if strings.HasSuffix(p, "_read") && !slices.Contains(sensitiveReads, p) {
			readOnly = append(readOnly, p)
		}
	}
	return []*role{
		{Name: "Datadog Admin Role", Managed: true, Permissions: slices.Clone(permissions.Names)},
		{Name: "Datadog Standard Role", Managed: true, Permissions: standard},
		{Name: "Datadog Read Only Role", Managed: true, Permissions: readOnly},
	}
}

// active reports whether a user exists and is not disabled: only active
// users' keys and tokens authenticate.
func (e *Emulator) active(userID string) bool {
	u := e.org.Users[userID]
	return u != nil && !u.Disabled
}

// userHas reports whether an active user holds a permission through one of
// their roles.
func (e *Emulator) userHas(userID, permission string) bool {
	if !e.active(userID) {
		return false
	}
	for _, id := range e.org.Users[userID].RoleIDs {
		if r := e.org.Roles[id]; r != nil && slices.Contains(r.Permissions, permission) {
			return true
		}
	}
	return false
}

// relationship is a JSON:API to-one relationship.
func relationship(typ, id string) map[string]any {
	return map[string]any{"data": ref(typ, id)}
}

func ref(typ, id string) map[string]any {
	return map[string]any{"type": typ, "id": id}
}

// userObject renders a user as Datadog does in /api/v2/current_user, user
// lists and user creation. Datadog leaves the org relationship out when
// the user is an included resource of another object (as recorded), hence
// withOrg.
func (e *Emulator) userObject(u *user, withOrg bool) map[string]any {
	roles := make([]any, len(u.RoleIDs))
	for i, id := range u.RoleIDs {
		roles[i] = ref("roles", id)
	}
	relationships := map[string]any{"roles": map[string]any{"data": roles}}
	if withOrg {
		relationships["org"] = relationship("orgs", e.org.ID)
	}
	var name any
	if u.Name != nil {
		name = *u.Name
	}
	var title any
	if u.Title != nil {
		title = *u.Title
	}
	return map[string]any{
		"type": "users",
		"id":   u.ID,
		"attributes": map[string]any{
			"uuid":                  u.ID,
			"name":                  name,
			"handle":                u.handle(),
			"email":                 u.Email,
			"created_at":            formatTime(u.CreatedAt),
			"modified_at":           formatTime(u.ModifiedAt),
			"icon":                  gravatar(u.Email),
			"title":                 title,
			"verified":              u.Verified,
			"service_account":       u.ServiceAccount,
			"disabled":              u.Disabled,
			"allowed_login_methods": []string{},
			"status":                u.status(),
			"last_login_time":       nil,
		},
		"relationships": relationships,
	}
}

// roleObject renders a role. Included in a user read it is a summary;
// role endpoints add its permissions, and reads its user count.
func (e *Emulator) roleObject(r *role, v view) map[string]any {
	attrs := map[string]any{
		"name":        r.Name,
		"created_at":  formatTime(r.CreatedAt),
		"modified_at": formatTime(r.ModifiedAt),
	}
	if r.Managed { // recorded for Datadog's roles, absent for custom ones
		attrs["managed"] = true
	}
	obj := map[string]any{"type": "roles", "id": r.ID, "attributes": attrs}
	if v == viewIncluded {
		return obj
	}
	perms := make([]any, len(r.Permissions))
	for i, p := range r.Permissions {
		perms[i] = ref("permissions", permissionID(p))
	}
	obj["relationships"] = map[string]any{"permissions": map[string]any{"data": perms}}
	if v != viewCreated {
		attrs["user_count"] = e.userCount(r.ID)
	}
	return obj
}

func (e *Emulator) userCount(roleID string) int {
	n := 0
	for _, u := range e.org.Users {
		if !u.Disabled && slices.Contains(u.RoleIDs, roleID) {
			n++
		}
	}
	return n
}

// includedUsers renders the users with the given ids and their roles, for
// a JSON:API "included" member, each once.
func (e *Emulator) includedUsers(ids ...string) []any {
	included := []any{}
	seen := map[string]bool{}
	for _, id := range ids {
		u := e.org.Users[id]
		if u == nil || seen[id] {
			continue
		}
		seen[id] = true
		included = append(included, e.userObject(u, false))
		for _, roleID := range u.RoleIDs {
			if r := e.org.Roles[roleID]; r != nil && !seen[roleID] {
				seen[roleID] = true
				included = append(included, e.roleObject(r, viewIncluded))
			}
		}
	}
	return included
}

// includedRoles renders a user's roles with their permissions, as Datadog
// includes them in the answer to a user's creation.
func (e *Emulator) includedRoles(u *user) []any {
	included := []any{}
	seen := map[string]bool{}
	for _, id := range u.RoleIDs {
		r := e.org.Roles[id]
		if r == nil {
			continue
		}
		included = append(included, e.roleObject(r, viewCreated))
		for _, p := range r.Permissions {
			if !seen[p] {
				seen[p] = true
				included = append(included, permissionObject(p))
			}
		}
	}
	return included
}

// gravatar is the icon URL Datadog gives users without a picture.
func gravatar(email string) string {
	sum := md5.Sum([]byte(email))
	return "https://secure.gravatar.com/avatar/" + hex.EncodeToString(sum[:]) + "?s=48&d=retro"
}

// permissionsCreated stands in for the creation time of every permission,
// which the spec does not give. Datadog writes it with a "Z" (as recorded).
var permissionsCreated = time.Date(2018, 10, 19, 15, 35, 23, 734317000, time.UTC).Format("2006-01-02T15:04:05.000000Z")

// permissionID is the id of a permission, the same in every emulator.
func permissionID(name string) string { return nameUUID(name) }

// permissionByID maps permission ids back to names.
var permissionByID = func() map[string]string {
	m := map[string]string{}
	for _, name := range permissions.Names {
		m[permissionID(name)] = name
	}
	return m
}()

// permissionObject renders a permission the way GET /api/v2/permissions
// does. Display names and groups are derived from the name; descriptions
// come from the spec where it has one.
func permissionObject(name string) map[string]any {
	words := strings.Split(name, "_")
	for j, w := range words {
		if w != "" {
			words[j] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	displayName := strings.Join(words, " ")
	description := permissions.Descriptions[name]
	if description == "" {
		description = displayName + "."
	}
	displayType := "write"
	if strings.HasSuffix(name, "_read") {
		displayType = "read"
	}
	return map[string]any{
		"type": "permissions",
		"id":   permissionID(name),
		"attributes": map[string]any{
			"name":         name,
			"display_name": displayName,
			"description":  description,
			"created":      permissionsCreated,
			"group_name":   words[0],
			"display_type": displayType,
			"name_aliases": []string{},
			"restricted":   false,
		},
	}
}
