package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// The engine's own per-request work, without Vault or Datadog: what a
// creds read and a revocation cost in the plugin process beyond the
// transport and the network. `make bench` runs these with -benchmem.

// instantDatadog answers creates and deletes at once, without a network,
// so that a benchmark measures the engine alone. Any other call panics:
// the hot paths must not make it.
type instantDatadog struct {
	datadogAPI
	seq atomic.Int64
}

func (d *instantDatadog) Create(_ context.Context, o datadogObject, _ []string) (createdObject, error) {
	n := d.seq.Add(1)
	created := createdObject{ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", n), Secret: "ddapp_" + strings.Repeat("s", 34)}
	if o.ExpiresAt != nil {
		created.ExpiresAt = o.ExpiresAt
	}
	return created, nil
}

func (d *instantDatadog) Delete(context.Context, datadogObject) error { return nil }

// APIKeyCount reports an organisation far from its API key cap.
func (d *instantDatadog) APIKeyCount(context.Context) (int, int, error) { return 0, 1 << 20, nil }

// benchEnv is a configured backend on in-memory storage, with roles none
// (an application key alone), dynamic (with an API key of its own), shared
// (with the role's shared API key) and token (a service access token), as
// written by role writes, and Datadog answering at once.
func benchEnv(b *testing.B) (*datadogBackend, logical.Storage) {
	b.Helper()
	conf := logical.TestBackendConfig()
	conf.Logger = hclog.NewNullLogger()
	conf.BackendUUID = "4f6b0e0c-1d2a-4c1e-9a53-benchmark"
	conf.StorageView = &logical.InmemStorage{}
	conf.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	back, err := Factory(context.Background(), conf)
	if err != nil {
		b.Fatal(err)
	}
	be := back.(*datadogBackend)
	be.newClient = func(*datadogConfig, hclog.Logger) (datadogAPI, error) { return &instantDatadog{}, nil }

	cfg := &datadogConfig{APIKey: strings.Repeat("a", 32), AppKey: "ddapp_" + strings.Repeat("k", 34), Site: defaultSite,
		APIURL: "http://127.0.0.1:8126", OwnerID: "11111111-1111-1111-1111-111111111111", OrgID: "22222222-2222-2222-2222-222222222222"}
	scopes := []string{"dashboards_read", "monitors_read"}
	entries := map[string]any{
		configPath:          cfg,
		rolePrefix + "none": &datadogRole{CredentialType: kindApplicationKey, Scopes: scopes, APIKeyMode: apiKeyModeNone, TTL: time.Hour},
		rolePrefix + "dynamic": &datadogRole{CredentialType: kindApplicationKey, Scopes: scopes, APIKeyMode: apiKeyModeDynamic,
			TTL: time.Hour},
		rolePrefix + "shared": &datadogRole{CredentialType: kindApplicationKey, Scopes: scopes, APIKeyMode: apiKeyModeShared,
			TTL: time.Hour},
		rolePrefix + "token": &datadogRole{CredentialType: kindServiceAccessToken, Scopes: scopes, APIKeyMode: apiKeyModeDynamic,
			ServiceAccountID: "33333333-3333-3333-3333-333333333333", TTL: time.Hour},
	}
	for key, value := range entries {
		entry, err := logical.StorageEntryJSON(key, value)
		if err != nil {
			b.Fatal(err)
		}
		if err := conf.StorageView.Put(context.Background(), entry); err != nil {
			b.Fatal(err)
		}
	}
	return be, conf.StorageView
}

// BenchmarkCredsRead is a whole creds read in the engine: routing, field
// parsing, the role and config, the name, the record written twice, the
// Datadog calls (answered at once) and the response.
func BenchmarkCredsRead(b *testing.B) {
	for _, role := range []string{"none", "dynamic", "shared", "token"} {
		b.Run(role, func(b *testing.B) {
			be, storage := benchEnv(b)
			loopCredsRead(b, be, storage, role)
		})
	}
}

// loopCredsRead reads creds/<role> for as long as the benchmark runs.
func loopCredsRead(b *testing.B, be *datadogBackend, storage logical.Storage, role string) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := be.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "creds/" + role, Storage: storage, DisplayName: "token-ci-job",
		})
		if err != nil || resp.IsError() {
			b.Fatalf("creds/%s: %v %v", role, err, resp)
		}
	}
}

// BenchmarkRevoke is a lease's revocation in the engine, its secret
// decoded as the plugin transport hands it over.
func BenchmarkRevoke(b *testing.B) {
	be, storage := benchEnv(b)
	ctx := context.Background()
	issue := func() *logical.Secret {
		resp, err := be.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/dynamic", Storage: storage, DisplayName: "token-ci-job"})
		if err != nil || resp.IsError() {
			b.Fatalf("creds/dynamic: %v %v", err, resp)
		}
		encoded, err := pb.LogicalSecretToProtoSecret(resp.Secret)
		if err != nil {
			b.Fatal(err)
		}
		secret, err := pb.ProtoSecretToLogicalSecret(encoded)
		if err != nil {
			b.Fatal(err)
		}
		return secret
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		secret := issue()
		b.StartTimer()
		if _, err := be.HandleRequest(ctx, &logical.Request{Operation: logical.RevokeOperation, Storage: storage, Secret: secret}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCredentialName renders the default name template, as every
// creds read does.
func BenchmarkCredentialName(b *testing.B) {
	data := nameData{RoleName: "agent-role", DisplayName: "token-ci-job", EntityID: "44444444-4444-4444-4444-444444444444"}
	unique := mountMarker("4f6b0e0c-1d2a-4c1e-9a53-benchmark") + newRecordID()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := credentialName(defaultNameTemplate, data, unique); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScopes is the scope work of creds reads and role writes.
func BenchmarkScopes(b *testing.B) {
	scopes := []string{"dashboards_read", "monitors_read"}
	b.Run("allowed_scopes", func(b *testing.B) { // each creds read and renewal
		cfg := &datadogConfig{AllowedScopes: []string{"dashboards_read", "dashboards_write", "metrics_read", "monitors_read", "monitors_write", "timeseries_query"}}
		kind := credentialKinds[kindApplicationKey]
		b.ReportAllocs()
		for b.Loop() {
			if msg := cfg.scopesProblem(kind, scopes); msg != "" {
				b.Fatal(msg)
			}
		}
	})
	b.Run("binding", func(b *testing.B) { // each creds read, for the lease
		role := &datadogRole{CredentialType: kindApplicationKey, Scopes: scopes}
		b.ReportAllocs()
		for b.Loop() {
			role.binding()
		}
	})
	b.Run("known_permissions", func(b *testing.B) { // each role write, the list cached
		be, storage := benchEnv(b)
		be.scopes = map[string]bool{}
		for _, name := range permissions.Names {
			be.scopes[name] = true
		}
		be.scopesFetched = time.Now()
		b.ReportAllocs()
		for b.Loop() {
			if msg, err := be.checkScopes(context.Background(), storage, scopes); msg != "" || err != nil {
				b.Fatal(msg, err)
			}
		}
	})
	b.Run("normalize", func(b *testing.B) { // each role write
		raw := []string{" dashboards_read", "monitors_read ", "dashboards_read", ""}
		b.ReportAllocs()
		for b.Loop() {
			normalizeScopes(raw)
		}
	})
}

// BenchmarkRequestParsing is the framework's work on a request before
// the handler runs: routing the path, then validating and reading the
// fields, for a creds read and a role write as the HTTP API sends them.
func BenchmarkRequestParsing(b *testing.B) {
	be, _ := benchEnv(b)
	b.Run("route_creds", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if be.Route("creds/agent-role") == nil {
				b.Fatal("no route")
			}
		}
	})
	b.Run("creds_fields", func(b *testing.B) {
		schema := pathCreds(be).Fields
		b.ReportAllocs()
		for b.Loop() {
			d := &framework.FieldData{Raw: map[string]interface{}{"name": "agent-role"}, Schema: schema}
			if err := d.Validate(); err != nil {
				b.Fatal(err)
			}
			_ = d.Get("name").(string)
		}
	})
	b.Run("role_fields", func(b *testing.B) {
		schema := pathRoles(be)[0].Fields
		raw := map[string]interface{}{
			"name": "agent-role", "credential_type": "application_key", "scopes": "dashboards_read,monitors_read",
			"api_key_mode": "none", "ttl": "1h", "max_ttl": "24h",
		}
		b.ReportAllocs()
		for b.Loop() {
			d := &framework.FieldData{Raw: raw, Schema: schema}
			if err := d.Validate(); err != nil {
				b.Fatal(err)
			}
			for field := range schema {
				d.GetOk(field)
			}
		}
	})
}

// BenchmarkCredsResponse is the creds response as the plugin transport
// encodes it for Vault (its data and internal data as JSON).
func BenchmarkCredsResponse(b *testing.B) {
	for _, role := range []string{"none", "dynamic", "shared", "token"} {
		b.Run(role, func(b *testing.B) {
			be, storage := benchEnv(b)
			resp, err := be.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.ReadOperation, Path: "creds/" + role, Storage: storage, DisplayName: "token-ci-job",
			})
			if err != nil || resp.IsError() {
				b.Fatalf("creds/%s: %v %v", role, err, resp)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pb.LogicalResponseToProtoResponse(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
