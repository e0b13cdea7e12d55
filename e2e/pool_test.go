package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// poolCounts reads a role with the CLI, as an operator would, and returns
// its service_account_counts.
func poolCounts(t *testing.T, mount, role string) map[string]int {
	t.Helper()
	var read struct {
		Data struct {
			Counts map[string]int `json:"service_account_counts"`
		} `json:"data"`
	}
	out := cli(t, "read", "-format=json", mount+"/roles/"+role)
	if err := json.Unmarshal([]byte(out), &read); err != nil || read.Data.Counts == nil {
		t.Fatalf("vault read %s/roles/%s: no service_account_counts (%v) in %s", mount, role, err, out)
	}
	return read.Data.Counts
}

// TestPoolIssuesPastThePerOwnerLimit: Datadog (here allowing 3 application
// keys per owner) would refuse a fourth key to one service account; a role
// of three service accounts issues nine live credentials through a real
// Vault, each working and spread over the three, refuses the tenth with a
// 400, shows the counts, and leaves nothing once its leases are revoked.
func TestPoolIssuesPastThePerOwnerLimit(t *testing.T) {
	t.Parallel()
	const limit = 3
	dd := startDatadogWith(t, emulator.Options{MaxAppKeysPerUser: limit})
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configure(t, client, mount, dd)
	sas := []string{dd.serviceAccount(t), dd.serviceAccount(t), dd.serviceAccount(t)}
	cli(t, "write", mount+"/roles/fleet", "credential_type=service_account_application_key",
		"service_account_ids="+strings.Join(sas, ","), "scopes=dashboards_read", "ttl=10m", "max_ttl=1h")

	var leases []*api.Secret
	var ids []string
	perOwner := map[string]int{}
	for range 3 * limit {
		creds := readCreds(t, client, mount+"/creds/fleet")
		leases = append(leases, creds)
		ids = append(ids, credentialIDs(creds.Data)...)
		owner := str(t, creds.Data, "service_account_id")
		perOwner[owner]++
		key, ok := dd.key(str(t, creds.Data, "application_key_id"))
		if !ok || key.OwnerID != owner {
			t.Errorf("application key in Datadog %+v, want one of %s", key, owner)
		}
		if got := dd.get(t, "/api/v1/dashboard", str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key")); got != http.StatusOK {
			t.Errorf("GET /api/v1/dashboard with a key of %s: HTTP %d, want 200", owner, got)
		}
	}
	for _, sa := range sas {
		if perOwner[sa] != limit {
			t.Errorf("live credentials per service account %v, want %d each", perOwner, limit)
			break
		}
	}
	if len(leases) <= limit {
		t.Fatalf("%d live credentials: no more than one owner may hold", len(leases))
	}

	_, err := tryReadCreds(client, mount+"/creds/fleet")
	requireBadRequest(t, err, "every service account", "limit of 3 application keys per owner")

	if counts := poolCounts(t, mount, "fleet"); counts[sas[0]] != limit || counts[sas[1]] != limit || counts[sas[2]] != limit {
		t.Errorf("service_account_counts %v, want %d for each service account", counts, limit)
	}
	if _, err := client.Sys().Renew(leases[len(leases)-1].LeaseID, 60); err != nil {
		t.Errorf("renewing a lease of the pool: %v", err)
	}

	cli(t, "lease", "revoke", "-prefix", mount+"/creds/fleet")
	dd.waitKeysGone(t, time.Minute, ids...)
	for _, creds := range leases {
		if got := dd.get(t, "/api/v1/dashboard", str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key")); got == http.StatusOK {
			t.Errorf("a revoked key of %v still works", creds.Data["service_account_id"])
		}
	}
	// The records go once each revocation has deleted the keys.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		counts := poolCounts(t, mount, "fleet")
		if counts[sas[0]]+counts[sas[1]]+counts[sas[2]] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service_account_counts %v 30s after every lease was revoked, want 0", counts)
		}
	}
}
