package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// datadogObject is one thing the engine created in Datadog for a lease. Every
// credential kind is a list of these, so issuing, renewing, revoking and
// rolling back share one mechanism.
type datadogObject struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"` // empty until Datadog has answered the create
	Name string `json:"name"`
}

// describeObjects names objects for an error message, without secrets.
func describeObjects(objects []datadogObject) string {
	parts := make([]string, len(objects))
	for i, o := range objects {
		parts[i] = fmt.Sprintf("%s %s (%s)", describeKind(o.Kind), o.ID, o.Name)
	}
	return strings.Join(parts, ", ")
}

func decodeObjects(secret *logical.Secret) ([]datadogObject, error) {
	var objects []datadogObject
	if err := mapToStruct(secret.InternalData["objects"], &objects); err != nil || len(objects) == 0 {
		return nil, errors.New("the lease does not record which Datadog keys it owns")
	}
	return objects, nil
}

// mapToStruct decodes what Vault hands back from storage (JSON decoded into
// maps and slices) into a typed value.
func mapToStruct(in, out interface{}) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// deleteObjects deletes each object, by ID when Datadog returned one and
// otherwise by looking its unique name up. Objects already gone count as
// deleted, so it can run any number of times.
func (b *datadogBackend) deleteObjects(ctx context.Context, client datadogAPI, objects []datadogObject) error {
	var errs []error
	for _, o := range objects {
		ids := []string{o.ID}
		if o.ID == "" {
			found, err := client.FindByName(ctx, o.Kind, o.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("error looking up Datadog %s %q: %w", describeKind(o.Kind), o.Name, err))
				continue
			}
			ids = found
		}
		for _, id := range ids {
			if err := client.Delete(ctx, o.Kind, id); err != nil && !errors.Is(err, errNotFound) {
				errs = append(errs, fmt.Errorf("error deleting Datadog %s %s (%s): %w", describeKind(o.Kind), id, o.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (b *datadogBackend) revokeCredential(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	objects, err := decodeObjects(req.Secret)
	if err != nil {
		return nil, err
	}
	client, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, fmt.Errorf("cannot delete Datadog keys %s: %w", describeObjects(objects), errNotConfigured)
	}
	// An error makes Vault keep the lease and retry the revocation later.
	return nil, b.deleteObjects(ctx, client, objects)
}

func (b *datadogBackend) renewCredential(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	roleName, _ := req.Secret.InternalData["role"].(string)
	role, err := getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("cannot renew: role %q no longer exists; request new credentials from an existing role", roleName), nil
	}
	objects, err := decodeObjects(req.Secret)
	if err != nil {
		return nil, err
	}
	client, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return logical.ErrorResponse("cannot renew: %s", errNotConfigured), nil
	}
	for _, o := range objects {
		exists, err := client.Exists(ctx, o.Kind, o.ID)
		if err != nil {
			return nil, fmt.Errorf("error checking Datadog %s %s before renewal: %w", describeKind(o.Kind), o.ID, err)
		}
		if !exists {
			return logical.ErrorResponse("cannot renew: Datadog %s %s (%s) was deleted outside Vault; request new credentials", describeKind(o.Kind), o.ID, o.Name), nil
		}
	}

	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = role.TTL
	resp.Secret.MaxTTL = role.MaxTTL
	return resp, nil
}
