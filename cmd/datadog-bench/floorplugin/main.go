// Command floorplugin holds the benchmark's two floors: secrets engines
// built with the same SDK and served the same way as the Datadog engine.
//
// creds/<name> is the leased-secret floor: it returns a leased secret at
// once, with no storage and no upstream call. Whatever a read of it costs
// is what Vault itself charges any dynamic-secret engine per read: the
// plugin transport, the lease's registration and the response.
//
// safe/creds/<name> is the crash-safe floor: the least an engine that
// never loses a key can do. It writes one storage entry (its write-ahead
// record), creates an application key in Datadog directly with
// datadog-api-client-go, rewrites the entry with the key's id and returns
// the lease; its revocation deletes the key, then the entry. safe/config
// takes the Datadog it talks to (api_url, api_key, app_key).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
	cleanhttp "github.com/hashicorp/go-cleanhttp"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

func main() {
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	tlsProviderFunc := api.VaultPluginTLSProvider(apiClientMeta.GetTLSConfig())
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    tlsProviderFunc,
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}

const (
	secretType     = "floor"
	safeSecretType = "floor_safe"
)

type backend struct {
	*framework.Backend

	mu   sync.RWMutex
	ctx  context.Context // carries the Datadog keys, as client-go wants them
	keys *datadogV2.KeyManagementApi
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &backend{}
	b.Backend = &framework.Backend{
		BackendType:    logical.TypeLogical,
		RunningVersion: "v1.0.0", // the version it is registered under

		Paths: []*framework.Path{{
			Pattern: "creds/" + framework.GenericNameRegex("name"),
			Fields: map[string]*framework.FieldSchema{
				"name": {Type: framework.TypeLowerCaseString, Required: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.read},
			},
		}, {
			Pattern: "safe/config",
			Fields: map[string]*framework.FieldSchema{
				"api_url": {Type: framework.TypeString},
				"api_key": {Type: framework.TypeString},
				"app_key": {Type: framework.TypeString},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.configure},
			},
		}, {
			Pattern: "safe/creds/" + framework.GenericNameRegex("name"),
			Fields: map[string]*framework.FieldSchema{
				"name": {Type: framework.TypeLowerCaseString, Required: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.safeRead},
			},
		}},
		Secrets: []*framework.Secret{{
			Type: safeSecretType,
			Renew: func(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
				return &logical.Response{Secret: req.Secret}, nil
			},
			Revoke: b.safeRevoke,
		}, {
			Type: secretType,
			Renew: func(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
				return &logical.Response{Secret: req.Secret}, nil
			},
			Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				return nil, nil
			},
		}},
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// read answers with a secret shaped like the Datadog engine's application
// key response (the same fields, of the same lengths, and internal data of
// the same size), so that the lease Vault stores is as large as the
// engine's and the two differ only by what the engine does.
func (b *backend) read(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	resp := b.Secret(secretType).Response(engineShaped(d.Get("name").(string)))
	resp.Secret.TTL = time.Hour
	return resp, nil
}

// engineShaped is a creds response and internal data of the engine's
// shape and size.
func engineShaped(role string) (map[string]interface{}, map[string]interface{}) {
	name := "vault-" + role + "-token-1700000000-0123abcd01234567" + strings.Repeat("x", 16)
	data := map[string]interface{}{
		"name":               name,
		"site":               "datadoghq.com",
		"api_url":            "http://127.0.0.1:40000",
		"application_key":    "ddapp_" + strings.Repeat("a", 34),
		"application_key_id": "00000000-0000-0000-0000-000000000000",
		"scopes":             []string{"dashboards_read", "monitors_read"},
	}
	internal := map[string]interface{}{
		"role":   role,
		"record": strings.Repeat("r", 16),
		"objects": []map[string]interface{}{{
			"kind": "application_key", "id": "00000000-0000-0000-0000-000000000000", "name": name,
			"owner": "00000000-0000-0000-0000-000000000000",
			"home":  map[string]interface{}{"org_id": "00000000-0000-0000-0000-000000000000", "site": "datadoghq.com", "api_url": "http://127.0.0.1:40000"},
		}},
		"binding":    map[string]interface{}{"credential_type": "application_key", "scopes": []string{"dashboards_read", "monitors_read"}},
		"lease_ends": time.Now().Add(time.Hour).Format(time.RFC3339Nano),
	}
	return data, internal
}

// configure keeps the Datadog the crash-safe floor talks to, in memory:
// the benchmark writes it once after mounting.
func (b *backend) configure(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	u, err := url.Parse(d.Get("api_url").(string))
	if err != nil {
		return nil, err
	}
	cfg := datadog.NewConfiguration()
	cfg.RetryConfiguration.EnableRetry = false
	cfg.HTTPClient = cleanhttp.DefaultPooledClient()
	cfg.Host, cfg.Scheme = u.Host, u.Scheme
	ctx := context.WithValue(context.Background(), datadog.ContextAPIKeys, map[string]datadog.APIKey{
		"apiKeyAuth": {Key: d.Get("api_key").(string)},
		"appKeyAuth": {Key: d.Get("app_key").(string)},
	})
	ctx = context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": "datadoghq.com"})
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ctx, b.keys = ctx, datadogV2.NewKeyManagementApi(datadog.NewAPIClient(cfg))
	return nil, nil
}

func (b *backend) client() (context.Context, *datadogV2.KeyManagementApi, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.keys == nil {
		return nil, nil, errors.New("write safe/config first")
	}
	return b.ctx, b.keys, nil
}

// safeRead is the crash-safe floor: record, create, record again.
func (b *backend) safeRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ddctx, keys, err := b.client()
	if err != nil {
		return nil, err
	}
	id := strings.ToLower(rand.Text()[:16])
	name := "vault-floor-" + d.Get("name").(string) + "-" + id
	if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "records/" + id, Value: []byte(name)}); err != nil {
		return nil, err
	}
	attrs := datadogV2.NewApplicationKeyCreateAttributes(name)
	attrs.SetScopes([]string{"dashboards_read", "monitors_read"})
	body := datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
	out, _, err := keys.CreateCurrentUserApplicationKey(ddctx, *body)
	if err != nil {
		return nil, err
	}
	key := out.GetData()
	attributes := key.GetAttributes()
	if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "records/" + id, Value: []byte(name + " " + key.GetId())}); err != nil {
		return nil, err
	}
	// The answer has the engine's shape and size, so that the lease Vault
	// stores is as large as the engine's.
	data, internal := engineShaped(d.Get("name").(string))
	data["name"], data["application_key"], data["application_key_id"] = name, attributes.GetKey(), key.GetId()
	internal["record"], internal["key_id"] = id, key.GetId()
	resp := b.Secret(safeSecretType).Response(data, internal)
	resp.Secret.TTL = time.Hour
	return resp, nil
}

func (b *backend) safeRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	ddctx, keys, err := b.client()
	if err != nil {
		return nil, err
	}
	if _, err := keys.DeleteCurrentUserApplicationKey(ddctx, req.Secret.InternalData["key_id"].(string)); err != nil {
		return nil, err
	}
	return nil, req.Storage.Delete(ctx, "records/"+req.Secret.InternalData["record"].(string))
}
