package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestCLISession is the README's story, typed as a user would: enable the
// engine at datadog/, configure it, write a role, read credentials, use
// them against Datadog, renew and revoke the lease.
func TestCLISession(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	client := newClient(t)

	cli(t, "secrets", "enable", "-path=datadog", pluginName)
	disableAtCleanup(t, client, "datadog", dd)
	requireRunningVersion(t, client, "datadog")

	cli(t, "write", "datadog/config", "api_key="+dd.APIKey(), "app_key="+dd.AppKey(), "api_url="+dd.URL)
	config := cli(t, "read", "datadog/config")
	for _, secret := range []string{dd.APIKey(), dd.AppKey()} {
		if strings.Contains(config, secret) {
			t.Errorf("vault read datadog/config shows a root key:\n%s", redactSecrets(config))
		}
	}
	if !strings.Contains(config, dd.APIKey()[len(dd.APIKey())-4:]) || !strings.Contains(config, dd.URL) {
		t.Errorf("vault read datadog/config does not show the api_key's last 4 characters and the api_url:\n%s", config)
	}

	scopes := []string{"dashboards_read", "metrics_read"}
	cli(t, "write", "datadog/roles/agent-role", "scopes="+strings.Join(scopes, ","), "ttl=1h", "max_ttl=2h")
	// path-help documents the fields a role is written with and every field
	// a role read shows.
	role := cliSecret(t, "read", "-format=json", "datadog/roles/agent-role")
	fields := []string{"name", "credential_type", "scopes", "api_key_mode", "ttl", "max_ttl"}
	for field := range role.Data {
		fields = append(fields, field)
	}
	help := cli(t, "path-help", "datadog/roles/x")
	for _, field := range fields {
		if !strings.Contains(help, field) {
			t.Errorf("vault path-help datadog/roles/x does not mention %s:\n%s", field, help)
		}
	}

	creds := cliSecret(t, "read", "-format=json", "datadog/creds/agent-role")
	if creds.LeaseDuration != 3600 || !creds.Renewable {
		t.Errorf("creds lease: %ds renewable=%v, want 3600s renewable", creds.LeaseDuration, creds.Renewable)
	}
	if creds.Data["site"] != "datadoghq.com" || creds.Data["api_url"] != dd.URL {
		t.Errorf("creds site, api_url = %v, %v; want datadoghq.com, %s", creds.Data["site"], creds.Data["api_url"], dd.URL)
	}
	dd.requireKeysIssued(t, creds.Data, "agent-role", scopes)

	apiKey, appKey := str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key")
	for path, want := range map[string]int{
		"/api/v2/validate_keys": http.StatusOK,
		"/api/v1/dashboard":     http.StatusOK,        // dashboards_read is in scope
		"/api/v1/monitor":       http.StatusForbidden, // monitors_read is not
	} {
		if got := dd.get(t, path, apiKey, appKey); got != want {
			t.Errorf("GET %s with the issued keys: HTTP %d, want %d", path, got, want)
		}
	}

	renewed := cliSecret(t, "lease", "renew", "-format=json", "-increment=30m", creds.LeaseID)
	if renewed.LeaseDuration != 1800 {
		t.Errorf("lease renewed with -increment=30m lasts %ds, want 1800s", renewed.LeaseDuration)
	}

	cli(t, "lease", "revoke", creds.LeaseID)
	dd.waitKeysGone(t, 10*time.Second, str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"))
	if got := dd.get(t, "/api/v2/validate_keys", apiKey, appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v2/validate_keys with revoked keys: HTTP %d, want 403", got)
	}
}

// cliSecret runs a vault command with -format=json and decodes its secret,
// recording the credentials it holds, if any.
func cliSecret(t *testing.T, args ...string) *api.Secret {
	t.Helper()
	out := cli(t, args...)
	var secret api.Secret
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		t.Fatalf("vault %s: output is not a secret: %v\n%s", redactSecrets(strings.Join(args, " ")), err, redactSecrets(out))
	}
	noteIssuedCredentials(secret.Data)
	return &secret
}
