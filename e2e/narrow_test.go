package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNarrowedCreds asks for less than the role grants, with vault write
// as an agent would: more scopes or a longer ttl than the role's are
// refused with a 400 naming them and create nothing; a subset of scopes
// and a shorter ttl make a key with exactly those scopes and a lease of
// that ttl, which renews while the role still grants the scopes.
func TestNarrowedCreds(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/agent", map[string]any{"scopes": "dashboards_read,monitors_read", "ttl": "30m", "max_ttl": "2h"})

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"scopes=dashboards_read,logs_read_data"}, []string{"logs_read_data", `role "agent"`, "Code: 400"}},
		{[]string{"ttl=1h"}, []string{"ttl 1h0m0s is longer than role", "30m0s", "Code: 400"}},
		{[]string{"scopes=monitors_read", "ttl=31m"}, []string{"ttl 31m0s", "Code: 400"}},
	} {
		out, err := vault.cli(append([]string{"write", "-format=json", mount + "/creds/agent"}, tc.args...)...)
		if err == nil {
			noteIssuedCredentials(cliSecretData(out))
			t.Errorf("vault write %s/creds/agent %s succeeded; want a refusal", mount, strings.Join(tc.args, " "))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("vault write %s/creds/agent %s: output does not mention %q:\n%s", mount, strings.Join(tc.args, " "), w, redactSecrets(out))
			}
		}
	}
	for _, k := range dd.Keys() {
		if strings.HasPrefix(k.Name, "vault-") {
			t.Errorf("a refused request left %s %s in Datadog", k.Kind, k.ID)
		}
	}

	creds := cliSecret(t, "write", "-format=json", mount+"/creds/agent", "scopes=monitors_read", "ttl=5m")
	if creds.LeaseDuration != 300 || !creds.Renewable {
		t.Errorf("narrowed lease: %ds renewable=%v, want 300s renewable", creds.LeaseDuration, creds.Renewable)
	}
	dd.requireKeysIssued(t, creds.Data, "agent", []string{"monitors_read"})
	apiKey, appKey := str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key")
	if got := dd.get(t, "/api/v1/monitor", apiKey, appKey); got != http.StatusOK {
		t.Errorf("GET /api/v1/monitor with the narrowed key: HTTP %d, want 200", got)
	}
	if got := dd.get(t, "/api/v1/dashboard", apiKey, appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v1/dashboard, granted by the role but not asked for: HTTP %d, want 403", got)
	}

	// Renewed without an increment, the lease keeps the narrowed ttl.
	renewed, err := client.Sys().Renew(creds.LeaseID, 0)
	if err != nil {
		noteError(err)
		t.Fatalf("renewing the narrowed lease: %v", err)
	}
	if renewed.LeaseDuration != 300 {
		t.Errorf("renewed narrowed lease lasts %ds, want 300s", renewed.LeaseDuration)
	}
	// A role that stops granting the narrowed scope stops the renewals.
	write(t, client, mount+"/roles/agent", map[string]any{"scopes": "dashboards_read"})
	_, err = client.Sys().Renew(creds.LeaseID, 0)
	requireBadRequest(t, err, "no longer grants scopes [monitors_read]")

	cli(t, "lease", "revoke", creds.LeaseID)
	dd.waitKeysGone(t, 10*time.Second, credentialIDs(creds.Data)...)
}

// cliSecretData is the data of a secret the CLI printed as JSON, if any.
func cliSecretData(out string) map[string]any {
	var secret struct {
		Data map[string]any `json:"data"`
	}
	json.Unmarshal([]byte(out), &secret)
	return secret.Data
}
