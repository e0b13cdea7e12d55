package e2e

import (
	"strings"
	"testing"
)

// TestBadInputsAreRefused sends mistakes through Vault's HTTP API: each must
// come back as HTTP 400 with a message naming what is wrong.
func TestBadInputsAreRefused(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)

	// A second engine with a role but no config.
	unconfigured := mount + "-unconfigured"
	enableEngine(t, client, unconfigured, nil)
	write(t, client, unconfigured+"/roles/agent", map[string]any{"scopes": "dashboards_read"})

	withKeys := func(data map[string]any) map[string]any {
		data["api_key"], data["app_key"] = dd.APIKey(), dd.AppKey()
		return data
	}
	writes := []struct {
		name string
		path string
		data map[string]any
		want []string
	}{
		{"unknown site", mount + "/config", withKeys(map[string]any{"site": "datadoghq.example"}), []string{"site", "datadoghq.example"}},
		{"http api_url to a remote host", mount + "/config", withKeys(map[string]any{"api_url": "http://datadog.example.com"}), []string{"api_url", "loopback"}},
		{"empty scopes", mount + "/roles/r", map[string]any{"scopes": ""}, []string{"scopes"}},
		{"unknown scope", mount + "/roles/r", map[string]any{"scopes": "dashboards_read,dashboard_reed"}, []string{"scopes", "dashboard_reed"}},
		{"ttl above max_ttl", mount + "/roles/r", map[string]any{"scopes": "dashboards_read", "ttl": "2h", "max_ttl": "1h"}, []string{"ttl", "max_ttl"}},
		{"unknown api_key_mode", mount + "/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "rotating"}, []string{"api_key_mode", "rotating", "shared, dynamic"}},
	}
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Logical().Write(tc.path, tc.data)
			requireBadRequest(t, err, tc.want...)
		})
	}

	reads := []struct {
		name string
		path string
		want []string
	}{
		{"creds of an unknown role", mount + "/creds/nope", []string{"role", `"nope"`}},
		{"creds before config", unconfigured + "/creds/agent", []string{"config"}},
	}
	for _, tc := range reads {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tryReadCreds(client, tc.path)
			requireBadRequest(t, err, tc.want...)
		})
	}

	// The refused writes changed nothing.
	config, err := client.Logical().Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if config.Data["site"] != "datadoghq.com" || config.Data["api_url"] != dd.URL {
		t.Errorf("config after refused writes: %v", config.Data)
	}
	if role, err := client.Logical().Read(mount + "/roles/r"); err != nil || role != nil {
		t.Errorf("refused role writes left a role: %v, %v", role, err)
	}
}

// TestGuardrailsHoldAfterTheFact: allowed_scopes refuses unscoped roles and
// is enforced when credentials are issued and renewed, not only when roles
// are written; a lease is no longer renewed once its role issues something
// else.
func TestGuardrailsHoldAfterTheFact(t *testing.T) {
	t.Parallel()
	_, client, mount := startEngine(t)
	write(t, client, mount+"/roles/monitors", map[string]any{"scopes": "monitors_read"})
	write(t, client, mount+"/roles/dashboards", map[string]any{"scopes": "dashboards_read,monitors_read"})
	monitors := readCreds(t, client, mount+"/creds/monitors")
	dashboards := readCreds(t, client, mount+"/creds/dashboards")

	write(t, client, mount+"/config", map[string]any{"allowed_scopes": "dashboards_read"})
	_, err := client.Logical().Write(mount+"/roles/wide", map[string]any{"allow_unscoped": true})
	requireBadRequest(t, err, "unscoped", "allowed_scopes")
	_, err = tryReadCreds(client, mount+"/creds/monitors")
	requireBadRequest(t, err, "monitors_read", "allowed_scopes")
	_, err = client.Sys().Renew(monitors.LeaseID, 0)
	requireBadRequest(t, err, "cannot renew", "monitors_read", "allowed_scopes")

	write(t, client, mount+"/config", map[string]any{"allowed_scopes": ""})
	write(t, client, mount+"/roles/dashboards", map[string]any{"scopes": "dashboards_read"})
	_, err = client.Sys().Renew(dashboards.LeaseID, 0)
	requireBadRequest(t, err, "cannot renew", `role "dashboards"`, "scopes")
}

// TestHelpDescribesEveryKind: vault path-help tells what each credential
// kind returns, not application keys only.
func TestHelpDescribesEveryKind(t *testing.T) {
	t.Parallel()
	_, _, mount := startEngine(t)
	for _, path := range []string{mount + "/creds/x", mount + "/"} {
		help := cli(t, "path-help", path)
		for _, want := range []string{"application_key", "service_account_application_key", "personal_access_token", "service_access_token", "api_key", "access_token", "expires_at"} {
			if !strings.Contains(help, want) {
				t.Errorf("vault path-help %s does not mention %s", path, want)
			}
		}
	}
}
