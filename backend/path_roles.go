package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const rolePrefix = "roles/"

// Ways a role provides the API key that goes with an application key.
const (
	apiKeyModeShared  = "shared"  // one API key per rotation window, held by the window's leases (shared_api_key.go)
	apiKeyModeDynamic = "dynamic" // a new API key per lease, deleted with it
	apiKeyModeNone    = "none"    // no API key: the consumer has its own
	apiKeyModeStatic  = "static"  // the configured api_key, shared by every lease
)

// Shared is the default: Datadog caps an organisation's API keys (50 by
// default), which per-lease keys would reach within a few dozen leases.
var apiKeyModes = []string{apiKeyModeShared, apiKeyModeDynamic, apiKeyModeNone, apiKeyModeStatic}

// apiKeyRoleModes are the modes of api_key roles, whose credential is the
// API key itself.
var apiKeyRoleModes = []string{apiKeyModeShared, apiKeyModeDynamic}

type datadogRole struct {
	CredentialType   string        `json:"credential_type"`
	Scopes           []string      `json:"scopes"`
	AllowUnscoped    bool          `json:"allow_unscoped,omitempty"`
	APIKeyMode       string        `json:"api_key_mode"`
	ServiceAccountID string        `json:"service_account_id,omitempty"`
	NameTemplate     string        `json:"name_template,omitempty"`
	TTL              time.Duration `json:"ttl"`
	MaxTTL           time.Duration `json:"max_ttl"`

	// ServiceAccountIDs, instead of ServiceAccountID: a pool (pool.go).
	ServiceAccountIDs []string `json:"service_account_ids,omitempty"`
	// IdleTTL: a credential unused for this long is deleted early; 0: never.
	IdleTTL time.Duration `json:"idle_ttl,omitempty"`
	// APIKeyRotation is how long a shared API key is handed to new leases;
	// 0: the default.
	APIKeyRotation time.Duration `json:"api_key_rotation,omitempty"`
}

func (r *datadogRole) kind() credentialKind { return credentialKinds[r.CredentialType] }

func (r *datadogRole) nameTemplate() string {
	if r.NameTemplate != "" {
		return r.NameTemplate
	}
	return defaultNameTemplate
}

func (r *datadogRole) responseData() map[string]interface{} {
	data := map[string]interface{}{
		"credential_type":    r.CredentialType,
		"scopes":             r.Scopes,
		"allow_unscoped":     r.AllowUnscoped,
		"api_key_mode":       r.APIKeyMode,
		"service_account_id": r.ServiceAccountID,
		"name_template":      r.nameTemplate(),
		"ttl":                int64(r.TTL.Seconds()),
		"max_ttl":            int64(r.MaxTTL.Seconds()),
		"idle_ttl":           int64(r.IdleTTL.Seconds()),
		"api_key_rotation":   int64(r.apiKeyRotation().Seconds()),
	}
	// Fields that do not apply to the kind are left out rather than shown empty.
	if !r.kind().withAPIKey {
		delete(data, "allow_unscoped")
		if r.CredentialType != kindAPIKey {
			delete(data, "api_key_mode")
		}
	}
	if !r.sharesAPIKey() {
		delete(data, "api_key_rotation")
	}
	if !r.kind().serviceAccount {
		delete(data, "service_account_id")
	}
	if r.CredentialType == kindServiceAccountApplicationKey {
		data["service_account_ids"] = append([]string{}, r.ServiceAccountIDs...)
	}
	return data
}

// unscopedWarning is shown wherever an unscoped role is read or written: its
// keys carry every permission of their owner.
const unscopedWarning = "UNSCOPED: this role issues application keys with every permission of their owner (allow_unscoped=true, no scopes)"

func pathRoles(b *datadogBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: rolePrefix + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": {
					Type:        framework.TypeLowerCaseString,
					Description: "Name of the role.",
					Required:    true,
				},
				"credential_type": {
					Type:          framework.TypeString,
					Default:       kindApplicationKey,
					AllowedValues: stringsToAny(credentialTypeNames()),
					Description:   "Kind of Datadog credential issued: " + credentialTypesHelp() + ".",
				},
				"service_account_id": {
					Type: framework.TypeString,
					Description: "Datadog user id of the service account that owns issued credentials; required for " +
						"service_account_application_key and service_access_token (or service_account_ids), checked to exist and be enabled.",
				},
				"service_account_ids": {
					Type: framework.TypeCommaStringSlice,
					Description: "Instead of service_account_id, for service_account_application_key: several service accounts, each " +
						"checked like it. Each creds request takes the one holding the fewest keys below Datadog's limit of 1000 " +
						"application keys per owner, so that the role issues past it.",
				},
				"allow_unscoped": {
					Type: framework.TypeBool,
					Description: "Allow an application key role with no scopes: its keys carry every permission of their " +
						"owner. Off by default; never allowed for tokens.",
				},
				"name_template": {
					Type: framework.TypeString,
					Description: "Template of the Datadog name of issued credentials (Vault's username template syntax; " +
						"fields .RoleName, .DisplayName, .EntityID; functions unix_time, random, truncate, ...). Must render a " +
						"name starting with vault-; the engine appends a unique id to every name. Default: " + defaultNameTemplate,
				},
				"scopes": {
					Type: framework.TypeCommaStringSlice,
					Description: "Datadog permission names the issued credential is limited to, such as dashboards_read,monitors_read. " +
						"Required and non-empty (except with allow_unscoped), checked against the organisation's permission list; " +
						"not used by api_key roles.",
					Required: true,
				},
				"api_key_mode": {
					Type:          framework.TypeString,
					Default:       apiKeyModeShared,
					AllowedValues: stringsToAny(apiKeyModes),
					Description: "API key returned with the application key, and how api_key roles issue theirs: shared (the default: " +
						"one API key per api_key_rotation window, handed to every lease of the window and deleted as soon as no lease " +
						"holds it), dynamic (a new API key per lease, deleted with it; refused while the organisation is within " +
						"config's api_key_reserve of Datadog's API key cap), none (no API key), or static (the engine's own api_key, " +
						"shared and never rotated; explicit opt-in). api_key roles take shared or dynamic.",
				},
				"api_key_rotation": {
					Type: framework.TypeDurationSecond,
					Description: "With api_key_mode shared: how long one API key is handed to new leases before the next lease " +
						"gets a new one, such as 24h (the default); at least 10s. A lease keeps its key until it ends.",
				},
				"ttl": {
					Type:        framework.TypeDurationSecond,
					Description: "Default lease duration of issued credentials. 0 uses the mount's default.",
				},
				"max_ttl": {
					Type:        framework.TypeDurationSecond,
					Description: "Maximum lifetime of issued credentials, renewals included. 0 uses the mount's maximum.",
				},
				"idle_ttl": {
					Type: framework.TypeDurationSecond,
					Description: "Delete an issued credential early once it has not been used for this long (Datadog's last use " +
						"of each of its keys; their creation when never used), such as 24h; at least twice config's last_use_lag (2h by default: Datadog reports use late), at most max_ttl. 0 (the default): never.",
				},
			},
			// Writes go to the active node of the primary: role writes
			// check scopes and service accounts with Datadog, and a standby
			// would do that only to fail storing the role.
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:  b.pathRoleRead,
					Summary:   "Read a role.",
					Responses: roleReadResponses(),
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathRoleWrite,
					Summary:                     roleWriteSummary,
					Responses:                   roleWriteResponses(),
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathRoleWrite,
					Summary:                     roleWriteSummary,
					Responses:                   roleWriteResponses(),
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathRoleDelete,
					Summary:                     "Delete a role; credentials it issued stay until their leases end.",
					Responses:                   map[int][]framework.Response{http.StatusNoContent: {noContent("Role deleted (or there was none).")}},
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			ExistenceCheck:  b.pathRoleExists,
			HelpSynopsis:    pathRoleHelpSyn,
			HelpDescription: pathRoleHelpDesc + pathRoleAPIKeyHelp,
		},
		{
			Pattern: rolePrefix + "?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:  b.pathRoleList,
					Summary:   "List the roles.",
					Responses: roleListResponses(),
				},
			},
			HelpSynopsis:    pathRoleListHelpSyn,
			HelpDescription: pathRoleListHelpDesc,
		},
	}
}

func getRole(ctx context.Context, s logical.Storage, name string) (*datadogRole, error) {
	entry, err := s.Get(ctx, rolePrefix+name)
	if err != nil || entry == nil {
		return nil, err
	}
	role := new(datadogRole)
	if err := entry.DecodeJSON(role); err != nil {
		return nil, fmt.Errorf("error reading role %q: %w", name, err)
	}
	return role, nil
}

// cachedRole returns a role for the paths that only read it (creds,
// renewals): from memory after the first read, so that issuing a
// credential reads no storage but its own record. Role writes and deletes,
// here or on another node (Invalidate), empty the cache; a read that
// started before such a change does not fill it.
func (b *datadogBackend) cachedRole(ctx context.Context, s logical.Storage, name string) (*datadogRole, error) {
	b.rolesLock.Lock()
	role, cached := b.roles[name]
	generation := b.rolesGeneration
	b.rolesLock.Unlock()
	if cached {
		return role, nil
	}
	role, err := getRole(ctx, s, name)
	if err != nil || role == nil {
		return role, err
	}
	b.rolesLock.Lock()
	if b.rolesGeneration == generation {
		if b.roles == nil {
			b.roles = map[string]*datadogRole{}
		}
		b.roles[name] = role
	}
	b.rolesLock.Unlock()
	return role, nil
}

func (b *datadogBackend) forgetRoles() {
	b.rolesLock.Lock()
	b.roles = nil
	b.rolesGeneration++
	b.rolesLock.Unlock()
}

func (b *datadogBackend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	return role != nil, err
}

func (b *datadogBackend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil || role == nil {
		return nil, err
	}
	resp := &logical.Response{Data: role.responseData()}
	if role.CredentialType == kindServiceAccountApplicationKey {
		if resp.Data["service_account_counts"], err = b.serviceAccountCounts(ctx, req.Storage, role); err != nil {
			return nil, err
		}
	}
	if role.AllowUnscoped && len(role.Scopes) == 0 {
		resp.AddWarning(unscopedWarning)
	}
	return resp, nil
}

func (b *datadogBackend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *datadogBackend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	defer b.forgetRoles()
	return nil, req.Storage.Delete(ctx, rolePrefix+d.Get("name").(string))
}

func (b *datadogBackend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		if req.Operation == logical.UpdateOperation {
			return logical.ErrorResponse("role %q does not exist", name), nil
		}
		role = &datadogRole{
			CredentialType: d.Get("credential_type").(string),
			APIKeyMode:     d.Get("api_key_mode").(string),
		}
	}

	if v, ok := d.GetOk("credential_type"); ok {
		role.CredentialType = v.(string)
	}
	if v, ok := d.GetOk("api_key_mode"); ok {
		role.APIKeyMode = v.(string)
	}
	if v, ok := d.GetOk("scopes"); ok {
		role.Scopes = normalizeScopes(v.([]string))
	}
	if v, ok := d.GetOk("allow_unscoped"); ok {
		role.AllowUnscoped = v.(bool)
	}
	if msg := setServiceAccounts(d, role); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	if v, ok := d.GetOk("name_template"); ok {
		role.NameTemplate = strings.TrimSpace(v.(string))
	}
	if v, ok := d.GetOk("ttl"); ok {
		role.TTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		role.MaxTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("idle_ttl"); ok {
		role.IdleTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("api_key_rotation"); ok {
		role.APIKeyRotation = time.Duration(v.(int)) * time.Second
	}

	if msg, err := b.validateRole(ctx, req, role); msg != "" || err != nil {
		if err != nil {
			return nil, err
		}
		return logical.ErrorResponse(msg), nil
	}

	entry, err := logical.StorageEntryJSON(rolePrefix+name, role)
	if err != nil {
		return nil, err
	}
	err = req.Storage.Put(ctx, entry)
	b.forgetRoles()
	if err != nil {
		return nil, err
	}

	var resp logical.Response
	if role.AllowUnscoped && len(role.Scopes) == 0 {
		resp.AddWarning(unscopedWarning)
	}
	mountMax := b.System().MaxLeaseTTL()
	if role.TTL > mountMax {
		resp.AddWarning(fmt.Sprintf("ttl %s exceeds the mount's max lease TTL %s; leases will be capped to it", role.TTL, mountMax))
	}
	if role.MaxTTL > mountMax {
		resp.AddWarning(fmt.Sprintf("max_ttl %s exceeds the mount's max lease TTL %s; leases will be capped to it", role.MaxTTL, mountMax))
	}
	if role.kind().withAPIKey && role.APIKeyMode == apiKeyModeStatic {
		resp.AddWarning("api_key_mode static hands out the engine's own API key, which no lease revocation removes")
	}
	// The role is stored: a failed look at config only costs the warning.
	if msg, _ := b.rootEndRoleWarning(ctx, req.Storage, role); msg != "" {
		resp.AddWarning(msg)
	}
	if role.ownsAPIKey() {
		resp.AddWarning("api_key_mode dynamic makes one API key per lease: Datadog caps an organisation's API keys (50 by default), " +
			"and creds are refused once the organisation nears its cap; api_key_mode shared hands one key per window to every lease")
	}
	if len(resp.Warnings) == 0 {
		return nil, nil
	}
	return &resp, nil
}

// validateRole returns a message naming what is wrong with the role, after
// asking Datadog what only it knows (the scopes, the service account).
func (b *datadogBackend) validateRole(ctx context.Context, req *logical.Request, role *datadogRole) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	kind, known := credentialKinds[role.CredentialType]
	var cfg *datadogConfig
	if sess, err := b.session(ctx, req.Storage); err != nil {
		return "", err
	} else if sess != nil {
		cfg = sess.cfg
	}
	switch {
	case !known:
		return fmt.Sprintf("credential_type %q is not supported; allowed: %s", role.CredentialType, strings.Join(credentialTypeNames(), ", ")), nil
	case !slices.Contains(apiKeyModes, role.APIKeyMode):
		return fmt.Sprintf("api_key_mode %q is not valid; allowed: %s", role.APIKeyMode, strings.Join(apiKeyModes, ", ")), nil
	case kind.name == kindAPIKey && !slices.Contains(apiKeyRoleModes, role.APIKeyMode):
		return fmt.Sprintf("api_key_mode %q does not apply to credential_type api_key, whose credential is the API key itself; allowed: %s",
			role.APIKeyMode, strings.Join(apiKeyRoleModes, ", ")), nil
	case role.APIKeyRotation < 0 || role.APIKeyRotation > 0 && role.APIKeyRotation < minAPIKeyRotation:
		return fmt.Sprintf("api_key_rotation %s is not allowed: give at least %s, or 0 for the default %s", role.APIKeyRotation, minAPIKeyRotation, defaultAPIKeyRotation), nil
	case role.TTL < 0 || role.MaxTTL < 0:
		return "ttl and max_ttl must not be negative", nil
	case role.MaxTTL > 0 && role.TTL > role.MaxTTL:
		return fmt.Sprintf("ttl (%s) must not exceed max_ttl (%s)", role.TTL, role.MaxTTL), nil
	case role.idleTTLProblem(cfg) != "":
		return role.idleTTLProblem(cfg), nil
	case !kind.scoped && len(role.Scopes) > 0:
		return "scopes do not apply to credential_type api_key: Datadog API keys carry no permissions of their own; remove scopes", nil
	case role.AllowUnscoped && !kind.withAPIKey:
		return fmt.Sprintf("allow_unscoped applies only to application key roles; a %s always needs scopes", describeKind(kind.name)), nil
	case kind.scoped && len(role.Scopes) == 0 && !role.AllowUnscoped:
		msg := "scopes is required: list the Datadog permissions the credential needs, such as dashboards_read,monitors_read"
		if kind.withAPIKey {
			msg += " (or set allow_unscoped=true to issue keys with every permission of their owner)"
		}
		return msg, nil
	case kind.serviceAccount && len(role.serviceAccounts()) == 0:
		msg := fmt.Sprintf("service_account_id is required for credential_type %s: the Datadog user id of the owning service account", kind.name)
		if kind.withAPIKey {
			msg += " (or service_account_ids, several of them)"
		}
		return msg, nil
	case !kind.serviceAccount && role.ServiceAccountID != "":
		return fmt.Sprintf("service_account_id applies only to credential types %s and %s", kindServiceAccountApplicationKey, kindServiceAccessToken), nil
	case kind.maxExpiry > 0 && max(role.TTL, role.MaxTTL) > kind.maxExpiry:
		return fmt.Sprintf("max_ttl %s is longer than Datadog allows: a %s expires at most %d days after creation", max(role.TTL, role.MaxTTL), describeKind(kind.name), int(kind.maxExpiry.Hours()/24)), nil
	}
	if msg := role.poolProblem(); msg != "" {
		return msg, nil
	}
	if msg := checkNameTemplate(role.nameTemplate()); msg != "" {
		return msg, nil
	}
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return "", err
	}
	// A kind a token root cannot issue is refused before Datadog is asked
	// anything.
	if sess != nil {
		if msg := sess.cfg.containmentProblem(kind, nil); msg != "" {
			return msg, nil
		}
	}
	if len(role.Scopes) > 0 {
		if msg, err := b.checkScopes(ctx, req.Storage, role.Scopes); msg != "" || err != nil {
			return msg, err
		}
	}
	if sess != nil {
		if msg := cmp.Or(sess.cfg.scopesProblem(kind, role.Scopes), sess.cfg.containmentProblem(kind, role.Scopes)); msg != "" {
			return msg, nil
		}
	}
	if kind.serviceAccount {
		return b.checkServiceAccounts(ctx, req.Storage, role)
	}
	return "", nil
}

// checkServiceAccount makes sure a role's service account (given in field)
// exists and is enabled, so that the role cannot fail at every creds read.
func (b *datadogBackend) checkServiceAccount(ctx context.Context, s logical.Storage, field, id string) (string, error) {
	sess, err := b.session(ctx, s)
	if err != nil {
		return "", err
	}
	if sess == nil {
		return fmt.Sprintf("%s %q cannot be checked before the engine is configured: write config first", field, id), nil
	}
	sa, err := sess.client.ServiceAccount(ctx, id)
	switch {
	case errors.Is(err, errNotFound):
		return fmt.Sprintf("%s %q: no such Datadog user", field, id), nil
	case err != nil:
		return "", fmt.Errorf("error looking up Datadog service account %q: %w", id, err)
	case !sa.IsServiceAccount:
		return fmt.Sprintf("%s %q is a Datadog user, not a service account", field, id), nil
	case sa.Disabled:
		return fmt.Sprintf("%s %q is a disabled service account; enable it in Datadog or pick another", field, id), nil
	}
	return "", nil
}

// normalizeScopes trims, drops empty entries and de-duplicates, keeping the
// order the operator wrote.
func normalizeScopes(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

const pathRoleHelpSyn = `Manage the roles that define which Datadog credentials can be issued.`

const pathRoleHelpDesc = `
A role names the kind of Datadog credential that creds/<role> issues
(credential_type), the Datadog permissions it is limited to (scopes), the
service account that owns it (service_account_id, for the service account
types; or service_account_ids, several of them sharing the keys of a
service_account_application_key role), whether an API key comes with an
application key, or how an api_key role issues its API key (api_key_mode,
api_key_rotation), how issued credentials are named in Datadog
(name_template), how long their leases last (ttl, max_ttl), and how long an
issued credential may go unused before the engine deletes it early
(idle_ttl: 0, the default, never; at least twice config's last_use_lag, 2h by default, and at most max_ttl; the lease
is idle when every one of its keys is, by Datadog's last use, or creation
when never used, and checked every watch_interval of config and at each
renewal; it applies to the role's leases issued before it was set too).

On write, scopes are checked against the organisation's permission list (the
list built into the engine when the engine is not configured yet or its
identity may not list permissions) and against config's allowed_scopes, and a
service account is checked to exist and be enabled; a refused write changes
nothing. With an access_token root (config), Datadog's rules for access tokens
apply: application key types and personal_access_token are refused (a token
may not create application keys; the engine takes it that a service access
token may not create a personal one), and a service_access_token role's
scopes must be among the root token's; a write warns when the root's end
will cut its leases short. Updates change only the fields given. Credentials already issued keep
what they were created with, and their leases are no longer renewed once the
role issues another credential_type, service account or scopes, or is deleted.

A read returns credential_type, scopes, name_template (the default when none
was set), ttl, max_ttl and idle_ttl in seconds, allow_unscoped and api_key_mode for the
application key types, api_key_mode for api_key roles, api_key_rotation in
seconds with api_key_mode shared, and service_account_id for the service
account types.
For service_account_application_key roles it also returns
service_account_ids and service_account_counts: for each service account of
the role, the application keys this mount's leases hold (all roles
together). Reads and writes of an unscoped role warn about it; writes also
warn when ttl or max_ttl exceed the mount's maximum lease TTL, and when
api_key_mode static hands out the engine's own API key.

Datadog allows an owner at most 1000 application keys. With
service_account_ids each creds request takes the service account whose keys
are fewest (ties: the first listed), asking Datadog for its count first when
it nears the limit, and the next one when Datadog refuses a key at the limit;
the request is refused only when every one is full. Leases renew while their
service account is still one of the role's. service_account_id and
service_account_ids are exclusive: a write giving one replaces the other.
`

const pathRoleAPIKeyHelp = `
Datadog caps the API keys of an organisation (50 by default; the listing's
meta.max_allowed). With api_key_mode shared (the default) a role keeps one
API key per api_key_rotation window (default 24h) and hands it to every lease
issued in the window; the key is deleted as soon as no lease holds it
(revoked, expired, killed by the watch, tidied), whether or not the window
has closed, and a closed window only stops it being handed to new leases. A
lease keeps the key it was issued with until it ends, renewals included, so
no lease outlives its key: a lease issued in a window ends at the latest at
the window's end plus its max_ttl. A shared API key can submit data for the
window's leases, never read: reading takes the application key, which stays
per lease. With api_key_mode dynamic each lease gets an API key of its own;
creds are refused with a 400 naming the cap and the count while the
organisation holds more than its cap less config's api_key_reserve.
`

const pathRoleListHelpSyn = `List the configured roles.`

const pathRoleListHelpDesc = `Lists the names of every role of this engine (keys).`
