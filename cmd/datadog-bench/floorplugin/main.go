// Command floorplugin is the leased-secret floor of the benchmark: a
// secrets engine built with the same SDK and served the same way as the
// Datadog engine, whose only path, creds/<name>, returns a leased secret at
// once, with no storage and no upstream call. Whatever a read of it costs is
// what Vault itself charges any dynamic-secret engine per read: the plugin
// transport, the lease's registration and the response.
package main

import (
	"context"
	"os"
	"strings"
	"time"

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

const secretType = "floor"

type backend struct {
	*framework.Backend
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
		}},
		Secrets: []*framework.Secret{{
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
	name := "vault-" + d.Get("name").(string) + "-token-1700000000-0123abcd" + strings.Repeat("x", 16)
	data := map[string]interface{}{
		"name":               name,
		"site":               "datadoghq.com",
		"api_url":            "http://127.0.0.1:40000",
		"application_key":    "ddapp_" + strings.Repeat("a", 34),
		"application_key_id": "00000000-0000-0000-0000-000000000000",
		"scopes":             []string{"dashboards_read", "monitors_read"},
	}
	internal := map[string]interface{}{
		"role":   d.Get("name").(string),
		"record": strings.Repeat("r", 16),
		"objects": []map[string]interface{}{{
			"kind": "application_key", "id": "00000000-0000-0000-0000-000000000000", "name": name,
			"owner": "00000000-0000-0000-0000-000000000000",
			"home":  map[string]interface{}{"org_id": "00000000-0000-0000-0000-000000000000", "site": "datadoghq.com", "api_url": "http://127.0.0.1:40000"},
		}},
		"binding":    map[string]interface{}{"credential_type": "application_key", "scopes": []string{"dashboards_read", "monitors_read"}},
		"lease_ends": time.Now().Add(time.Hour).Format(time.RFC3339Nano),
	}
	resp := b.Secret(secretType).Response(data, internal)
	resp.Secret.TTL = time.Hour
	return resp, nil
}
