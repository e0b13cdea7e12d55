package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/template"
	"github.com/hashicorp/vault/sdk/logical"
)

// credentialNameTemplate names every object the engine creates so that
// Datadog's key list and Audit Trail show which role and Vault identity it
// belongs to. The "vault-" prefix is what clean-up by name relies on.
const credentialNameTemplate = `vault-{{ .RoleName | truncate 30 }}-{{ .DisplayName | truncate 30 }}-{{ unix_time }}-{{ random 8 }}`

// maxNameLength keeps generated names well within what Datadog displays.
const maxNameLength = 100

func pathCreds(b *datadogBackend) *framework.Path {
	return &framework.Path{
		Pattern: "creds/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "generate",
			OperationSuffix: "credentials",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeLowerCaseString,
				Description: "Name of the role to issue credentials for.",
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathCredsRead},
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: pathCredsHelpDesc,
	}
}

func (b *datadogBackend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName := d.Get("name").(string)
	role, err := getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("unknown role %q: write roles/%s first", roleName, roleName), nil
	}
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse(errNotConfigured.Error()), nil
	}
	client, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	name, err := credentialName(roleName, req.DisplayName)
	if err != nil {
		return nil, err
	}
	objects := []datadogObject{{Kind: kindApplicationKey, Name: name}}
	if role.APIKeyMode == apiKeyModeDynamic {
		objects = append(objects, datadogObject{Kind: kindAPIKey, Name: name})
	}

	secrets, resp, err := b.createObjects(ctx, req.Storage, client, objects, role.Scopes)
	if resp != nil || err != nil {
		return resp, err
	}

	data := map[string]interface{}{
		"application_key":    secrets[0],
		"application_key_id": objects[0].ID,
		"name":               name,
		"scopes":             role.Scopes,
		"site":               cfg.Site,
		"api_url":            cfg.baseURL(),
	}
	switch role.APIKeyMode {
	case apiKeyModeDynamic:
		data["api_key"], data["api_key_id"] = secrets[1], objects[1].ID
	case apiKeyModeStatic:
		data["api_key"] = cfg.APIKey
	}
	internal := map[string]interface{}{
		"role":    roleName,
		"objects": objects,
	}
	resp = b.Secret(secretTypeApplicationKey).Response(data, internal)
	resp.Secret.TTL = role.TTL
	resp.Secret.MaxTTL = role.MaxTTL
	return resp, nil
}

// createObjects creates the objects in order under a write-ahead log entry,
// filling in their IDs and returning their secrets. If any step fails, what
// was created is deleted now; what cannot be deleted now stays in the WAL for
// the rollback to delete, so no key is ever left behind untracked.
func (b *datadogBackend) createObjects(ctx context.Context, s logical.Storage, client datadogAPI, objects []datadogObject, scopes []string) ([]string, *logical.Response, error) {
	walID, err := framework.PutWAL(ctx, s, walKindCreate, &walCreate{Objects: objects})
	if err != nil {
		return nil, nil, fmt.Errorf("error writing the write-ahead log before creating Datadog keys: %w", err)
	}

	secrets := make([]string, 0, len(objects))
	for i := range objects {
		created, err := client.Create(ctx, objects[i].Kind, objects[i].Name, scopes)
		if err != nil {
			// Only an ambiguous failure may have created the object: look it up by name.
			cleanup := objects[:i]
			if ambiguous(err) {
				cleanup = objects[:i+1]
			}
			if cerr := b.deleteObjects(ctx, client, cleanup); cerr != nil {
				b.Logger().Error("keys of a failed creds request could not be deleted yet; the WAL rollback will retry", "wal_id", walID, "error", cerr)
			} else if derr := framework.DeleteWAL(ctx, s, walID); derr != nil {
				b.Logger().Warn("error removing a write-ahead log entry whose keys are deleted", "wal_id", walID, "error", derr)
			}
			return nil, createFailure(objects[i].Kind, err), createError(objects[i].Kind, err)
		}
		objects[i].ID = created.ID
		secrets = append(secrets, created.Secret)
	}

	// If the WAL entry cannot be removed, the rollback would delete keys that
	// a lease owns; fail the request instead and let the rollback clean up.
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		return nil, nil, fmt.Errorf("error removing the write-ahead log entry of new Datadog keys (they will be deleted by the rollback): %w", err)
	}
	return secrets, nil, nil
}

// createFailure turns Datadog's refusals that an operator can act on into a
// 400 answer; other failures are internal errors (see createError).
func createFailure(kind string, err error) *logical.Response {
	switch httpStatus(err) {
	case http.StatusBadRequest:
		return logical.ErrorResponse("Datadog refused to create the %s: %v", describeKind(kind), err)
	case http.StatusForbidden:
		return logical.ErrorResponse("the configured Datadog identity may not create a %s (%v); grant it the permission or change config", describeKind(kind), err)
	}
	return nil
}

func createError(kind string, err error) error {
	if s := httpStatus(err); s == http.StatusBadRequest || s == http.StatusForbidden {
		return nil
	}
	return fmt.Errorf("error creating Datadog %s: %w", describeKind(kind), err)
}

func describeKind(kind string) string {
	return strings.ReplaceAll(strings.Replace(kind, "api_key", "API key", 1), "_", " ")
}

// credentialName renders the name of a new credential from the role and the
// requester's display name.
func credentialName(role, displayName string) (string, error) {
	tmpl, err := template.NewTemplate(template.Template(credentialNameTemplate))
	if err != nil {
		return "", err
	}
	name, err := tmpl.Generate(map[string]string{
		"RoleName":    sanitizeName(role),
		"DisplayName": sanitizeName(displayName),
	})
	if err != nil {
		return "", fmt.Errorf("error generating the credential name: %w", err)
	}
	if len(name) > maxNameLength {
		name = name[:maxNameLength]
	}
	return name, nil
}

// sanitizeName keeps names to characters that read well in Datadog's UI
// and in shell output.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}

const pathCredsHelpSyn = `Issue a new Datadog credential for a role.`

const pathCredsHelpDesc = `
Each read creates a new Datadog application key owned by the configured
identity, limited to the role's scopes, and (with api_key_mode dynamic) a new
API key. Both are returned once, with a lease; they are deleted in Datadog when
the lease is revoked or expires.

Returned fields: application_key, application_key_id, api_key and api_key_id
(when the role provides one), name, scopes, site and api_url. Use them as
DD_APP_KEY, DD_API_KEY and DD_SITE.
`
