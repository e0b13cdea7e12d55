package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

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

	name, err := credentialName(role.nameTemplate(), nameData{RoleName: roleName, DisplayName: req.DisplayName, EntityID: req.EntityID})
	if err != nil {
		return nil, fmt.Errorf("error generating the credential name from role %q's name_template: %w", roleName, err)
	}
	kind := role.kind()
	main := datadogObject{Kind: kind.name, Name: name, Owner: role.ServiceAccountID}
	now := time.Now()
	if kind.token {
		maxLease := role.MaxTTL
		if maxLease == 0 || maxLease > b.System().MaxLeaseTTL() {
			maxLease = b.System().MaxLeaseTTL()
		}
		expiresAt := kind.tokenExpiry(now, maxLease)
		main.ExpiresAt = &expiresAt
	}
	objects := []datadogObject{main}
	if kind.withAPIKey && role.APIKeyMode == apiKeyModeDynamic {
		objects = append(objects, datadogObject{Kind: kindAPIKey, Name: name})
	}

	secrets, resp, err := b.createObjects(ctx, req.Storage, client, objects, role.Scopes)
	if resp != nil || err != nil {
		return resp, err
	}

	data := map[string]interface{}{
		"name":    name,
		"site":    cfg.Site,
		"api_url": cfg.baseURL(),
	}
	for i, o := range objects {
		fields := objectFields[o.Kind]
		data[fields.secret], data[fields.id] = secrets[i], o.ID
		if o.ExpiresAt != nil {
			data["expires_at"] = o.ExpiresAt.Format(time.RFC3339)
		}
	}
	if kind.scoped {
		data["scopes"] = role.Scopes
	}
	if kind.serviceAccount {
		data["service_account_id"] = role.ServiceAccountID
	}
	if kind.withAPIKey && role.APIKeyMode == apiKeyModeStatic {
		data["api_key"] = cfg.APIKey
	}
	internal := map[string]interface{}{
		"role":    roleName,
		"objects": objects,
	}
	resp = b.Secret(secretType(kind.name)).Response(data, internal)
	resp.Secret.TTL = role.TTL
	resp.Secret.MaxTTL = b.leaseMaxTTL(role, objects, now)
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
		created, err := b.createObject(ctx, client, &objects[i], scopes)
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
			resp, err := createFailed(objects[i].Kind, err)
			return nil, resp, err
		}
		objects[i].ID = created.ID
		if created.ExpiresAt != nil {
			objects[i].ExpiresAt = created.ExpiresAt
		}
		secrets = append(secrets, created.Secret)
	}

	// If the WAL entry cannot be removed, the rollback would delete keys that
	// a lease owns; fail the request instead and let the rollback clean up.
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		return nil, nil, fmt.Errorf("error removing the write-ahead log entry of new Datadog keys (they will be deleted by the rollback): %w", err)
	}
	return secrets, nil, nil
}

// createObject creates one object. Datadog sets no minimum expiry for
// service access tokens in its specification; should it refuse a short one,
// the token is made once more to expire 24 h ahead (the lease still revokes
// it early).
func (b *datadogBackend) createObject(ctx context.Context, client datadogAPI, o *datadogObject, scopes []string) (createdObject, error) {
	created, err := client.Create(ctx, *o, scopes)
	if o.Kind == kindServiceAccessToken && o.ExpiresAt != nil && httpStatus(err) == http.StatusBadRequest &&
		time.Until(*o.ExpiresAt) < 24*time.Hour {
		b.Logger().Warn("Datadog refused the service access token's expiry; retrying with an expiry 24 h ahead",
			"name", o.Name, "expires_at", o.ExpiresAt.Format(time.RFC3339), "error", err)
		later := time.Now().Add(24*time.Hour + expiryGrace).UTC().Truncate(time.Second)
		o.ExpiresAt = &later
		created, err = client.Create(ctx, *o, scopes)
	}
	return created, err
}

// createFailed turns Datadog's refusals that an operator can act on into a
// 400 answer; other failures are internal errors.
func createFailed(kind string, err error) (*logical.Response, error) {
	switch httpStatus(err) {
	case http.StatusBadRequest:
		if limitReached(err) {
			return logical.ErrorResponse("Datadog refused to create the %s: its owner has reached Datadog's limit of 1000 application keys per user "+
				"(meta.max_allowed_per_user); revoke unused leases or delete unused keys of that owner (%v)", describeKind(kind), err), nil
		}
		if k := credentialKinds[kind]; k.token {
			return logical.ErrorResponse("Datadog refused to create the %s (%v); Datadog expires a %s between %s and %d days after creation: "+
				"check the role's max_ttl and the mount's max lease TTL", describeKind(kind), err, describeKind(kind), expiryFloor(k), int(k.maxExpiry.Hours()/24)), nil
		}
		return logical.ErrorResponse("Datadog refused to create the %s: %v", describeKind(kind), err), nil
	case http.StatusForbidden:
		return logical.ErrorResponse("the configured Datadog identity may not create a %s (%v); grant it the permission or change config", describeKind(kind), err), nil
	}
	return nil, fmt.Errorf("error creating Datadog %s: %w", describeKind(kind), err)
}

func expiryFloor(k credentialKind) string {
	if k.minExpiry == 0 {
		return "any time"
	}
	return fmt.Sprintf("%d hours", int(k.minExpiry.Hours()))
}

// limitReached reports whether Datadog refused a create because the owner
// holds as many keys as it allows.
func limitReached(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	for _, m := range ae.Messages {
		m = strings.ToLower(m)
		if strings.Contains(m, "limit") || strings.Contains(m, "more than") || strings.Contains(m, "maximum") {
			return true
		}
	}
	return false
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
