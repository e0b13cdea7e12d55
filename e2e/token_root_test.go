package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The engine's default root scopes, which a root token needs for every
// credential kind it may issue.
var defaultRootScopes = []string{"api_keys_delete", "api_keys_read", "api_keys_write", "service_account_write", "user_access_read", "user_app_keys"}

// serviceAccessToken makes a token of service account sa, as an
// administrator would to hand it to the engine as its root.
func (d *datadog) serviceAccessToken(t *testing.T, sa string, scopes []string, end time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"data":{"type":"service_access_tokens","attributes":{"name":"engine root","scopes":["%s"],"expires_at":%q}}}`,
		strings.Join(scopes, `","`), end.UTC().Format(time.RFC3339))
	status, created := d.do(t, http.MethodPost, "/api/v2/service_accounts/"+sa+"/access_tokens", body, d.root())
	if status != http.StatusCreated {
		t.Fatalf("creating an access token of %s: HTTP %d %v", sa, status, created)
	}
	token := created["data"].(map[string]any)["attributes"].(map[string]any)["key"].(string)
	noteSecret(token)
	return token
}

// configureTokenRoot writes the config of mount with an access_token root:
// a token of a new service account (admin role) with the default root
// scopes and more, expiring at end. It returns the service account.
func configureTokenRoot(t *testing.T, client *api.Client, mount string, dd *datadog, end time.Time, more ...string) string {
	t.Helper()
	sa := dd.serviceAccount(t)
	token := dd.serviceAccessToken(t, sa, append(append([]string{}, defaultRootScopes...), more...), end)
	write(t, client, mount+"/config", map[string]any{"access_token": token, "service_account_id": sa, "api_url": dd.URL})
	return sa
}

// appKeyHeader is how a tool that reads DD_APP_KEY alone sends a token.
func appKeyHeader(token string) map[string]string {
	return map[string]string{"DD-APPLICATION-KEY": token}
}

// TestTokenRootRules drives an engine whose root is a service access token
// through Vault: application key roles are refused (400, and no Datadog
// call for a role written before the root changed), so are token scopes
// the root lacks; a service access token role issues a token that a client
// sending it alone as DD-APPLICATION-KEY uses within its scopes until its
// lease is revoked; API key roles still issue.
func TestTokenRootRules(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t) // an application key root, to write the role below
	write(t, client, mount+"/roles/app", map[string]any{"scopes": "dashboards_read"})
	sa := configureTokenRoot(t, client, mount, dd, time.Now().Add(30*24*time.Hour), "dashboards_read")

	calls := dd.Requests()
	_, err := tryReadCreds(client, mount+"/creds/app")
	requireBadRequest(t, err, "nothing was created", "service_access_token", "app_key")
	if n := dd.Requests() - calls; n != 0 {
		t.Errorf("a refused creds read made %d Datadog calls", n)
	}
	_, err = client.Logical().Write(mount+"/roles/app2", map[string]any{"scopes": "dashboards_read"})
	requireBadRequest(t, err, "application keys", "service_access_token", "app_key")
	_, err = client.Logical().Write(mount+"/roles/wide", map[string]any{"credential_type": "service_access_token", "service_account_id": sa, "scopes": "monitors_read"})
	requireBadRequest(t, err, "monitors_read", "not among the scopes of the engine's root access token")

	write(t, client, mount+"/roles/sat", map[string]any{"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read", "ttl": "10m"})
	creds := readCreds(t, client, mount+"/creds/sat")
	token := str(t, creds.Data, "access_token")
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", appKeyHeader(token)); got != http.StatusOK {
		t.Errorf("the token as DD-APPLICATION-KEY alone, in scope: HTTP %d, want 200", got)
	}
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/monitor", "", appKeyHeader(token)); got != http.StatusForbidden {
		t.Errorf("the token as DD-APPLICATION-KEY alone, out of scope: HTTP %d, want 403", got)
	}
	cli(t, "lease", "revoke", creds.LeaseID)
	dd.waitKeysGone(t, 30*time.Second, str(t, creds.Data, "access_token_id"))
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", appKeyHeader(token)); got != http.StatusForbidden {
		t.Errorf("the token as DD-APPLICATION-KEY after its lease was revoked: HTTP %d, want 403", got)
	}

	write(t, client, mount+"/roles/agent", map[string]any{"credential_type": "api_key"})
	noteCreds(readCreds(t, client, mount+"/creds/agent").Data)
}
