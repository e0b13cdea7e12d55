package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const rolePrefix = "roles/"

// Ways a role provides the API key that goes with an application key.
const (
	apiKeyModeDynamic = "dynamic" // a new API key per lease, deleted with it
	apiKeyModeNone    = "none"    // no API key: the consumer has its own
	apiKeyModeStatic  = "static"  // the configured api_key, shared by every lease
)

var (
	credentialTypes = []string{kindApplicationKey}
	apiKeyModes     = []string{apiKeyModeDynamic, apiKeyModeNone, apiKeyModeStatic}
)

type datadogRole struct {
	CredentialType string        `json:"credential_type"`
	Scopes         []string      `json:"scopes"`
	APIKeyMode     string        `json:"api_key_mode"`
	TTL            time.Duration `json:"ttl"`
	MaxTTL         time.Duration `json:"max_ttl"`
}

func (r *datadogRole) responseData() map[string]interface{} {
	return map[string]interface{}{
		"credential_type": r.CredentialType,
		"scopes":          r.Scopes,
		"api_key_mode":    r.APIKeyMode,
		"ttl":             int64(r.TTL.Seconds()),
		"max_ttl":         int64(r.MaxTTL.Seconds()),
	}
}

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
					AllowedValues: stringsToAny(credentialTypes),
					Description: "Kind of Datadog credential issued: application_key (a scoped application key " +
						"owned by the configured identity).",
				},
				"scopes": {
					Type: framework.TypeCommaStringSlice,
					Description: "Datadog permission names the issued key is limited to, such as dashboards_read,monitors_read. " +
						"Required and non-empty: an unscoped key would carry every permission of its owner.",
					Required: true,
				},
				"api_key_mode": {
					Type:          framework.TypeString,
					Default:       apiKeyModeDynamic,
					AllowedValues: stringsToAny(apiKeyModes),
					Description: "API key returned with the application key: dynamic (a new API key per lease, deleted " +
						"with it), none (no API key), or static (the engine's own api_key, shared and never rotated; explicit opt-in).",
				},
				"ttl": {
					Type:        framework.TypeDurationSecond,
					Description: "Default lease duration of issued credentials. 0 uses the mount's default.",
				},
				"max_ttl": {
					Type:        framework.TypeDurationSecond,
					Description: "Maximum lifetime of issued credentials, renewals included. 0 uses the mount's maximum.",
				},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathRoleRead},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathRoleWrite},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRoleWrite},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathRoleDelete},
			},
			ExistenceCheck:  b.pathRoleExists,
			HelpSynopsis:    pathRoleHelpSyn,
			HelpDescription: pathRoleHelpDesc,
		},
		{
			Pattern: rolePrefix + "?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRoleList},
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

func (b *datadogBackend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	return role != nil, err
}

func (b *datadogBackend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	role, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil || role == nil {
		return nil, err
	}
	return &logical.Response{Data: role.responseData()}, nil
}

func (b *datadogBackend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *datadogBackend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
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
	if v, ok := d.GetOk("ttl"); ok {
		role.TTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		role.MaxTTL = time.Duration(v.(int)) * time.Second
	}

	switch {
	case !slices.Contains(credentialTypes, role.CredentialType):
		return logical.ErrorResponse("credential_type %q is not supported; allowed: %s", role.CredentialType, strings.Join(credentialTypes, ", ")), nil
	case !slices.Contains(apiKeyModes, role.APIKeyMode):
		return logical.ErrorResponse("api_key_mode %q is not valid; allowed: %s", role.APIKeyMode, strings.Join(apiKeyModes, ", ")), nil
	case len(role.Scopes) == 0:
		return logical.ErrorResponse("scopes is required: list the Datadog permissions the credential needs, such as dashboards_read,monitors_read"), nil
	case role.TTL < 0 || role.MaxTTL < 0:
		return logical.ErrorResponse("ttl and max_ttl must not be negative"), nil
	case role.MaxTTL > 0 && role.TTL > role.MaxTTL:
		return logical.ErrorResponse("ttl (%s) must not exceed max_ttl (%s)", role.TTL, role.MaxTTL), nil
	}
	if msg, err := b.checkScopes(ctx, req.Storage, role.Scopes); msg != "" || err != nil {
		if err != nil {
			return nil, err
		}
		return logical.ErrorResponse(msg), nil
	}

	entry, err := logical.StorageEntryJSON(rolePrefix+name, role)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}

	var resp logical.Response
	mountMax := b.System().MaxLeaseTTL()
	if role.TTL > mountMax {
		resp.AddWarning(fmt.Sprintf("ttl %s exceeds the mount's max lease TTL %s; leases will be capped to it", role.TTL, mountMax))
	}
	if role.MaxTTL > mountMax {
		resp.AddWarning(fmt.Sprintf("max_ttl %s exceeds the mount's max lease TTL %s; leases will be capped to it", role.MaxTTL, mountMax))
	}
	if role.APIKeyMode == apiKeyModeStatic {
		resp.AddWarning("api_key_mode static hands out the engine's own API key, which no lease revocation removes")
	}
	if len(resp.Warnings) == 0 {
		return nil, nil
	}
	return &resp, nil
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
A role names the kind of Datadog credential issued by creds/<role>, the
Datadog permissions (scopes) it is limited to, whether an API key comes with
it, and how long its lease lasts.

Scopes are checked against the organisation's permission list when the role is
written; an unknown scope is refused. Updates change only the fields given.
Credentials already issued keep the scopes they were created with.
`

const pathRoleListHelpSyn = `List the configured roles.`

const pathRoleListHelpDesc = `Lists the names of every role of this engine.`
