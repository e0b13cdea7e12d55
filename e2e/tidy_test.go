package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// tidyStatus starts a tidy with the CLI, as an operator would, and waits
// for its status.
func tidyStatus(t *testing.T, client *api.Client, mount string, args ...string) map[string]any {
	t.Helper()
	cli(t, append([]string{"write", mount + "/tidy"}, args...)...)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		status, err := client.Logical().Read(mount + "/tidy/status")
		if err != nil {
			t.Fatal(err)
		}
		if status != nil && status.Data["state"] != "running" {
			return status.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("tidy still running after a minute: %v", status)
		}
	}
}

// Vault's API client decodes numbers as json.Number.
const json0, json1 = json.Number("0"), json.Number("1")

// TestTidyRemovesWhatEscaped: a key carrying the mount's marker that no
// lease accounts for is found by a dry run, then deleted; the live lease's
// keys and another mount's key are left alone.
func TestTidyRemovesWhatEscaped(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	creds := readCreds(t, client, mount+"/creds/r")
	name := str(t, creds.Data, "name")
	marker := name[len(name)-32 : len(name)-16] // -<16-digit marker><record id>

	create := func(name string) string {
		status, key := dd.do(t, http.MethodPost, "/api/v2/current_user/application_keys",
			fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":%q}}}`, name), dd.root())
		if status != http.StatusCreated {
			t.Fatalf("creating %s: HTTP %d", name, status)
		}
		return key["data"].(map[string]any)["id"].(string)
	}
	orphan := create("vault-r-lost-" + marker + "abcdefghijklmnop")
	otherMount := create("vault-r-lost-0123abcd0123abcdabcdefghijklmnop")
	defer dd.DeleteKey(otherMount)

	dry := tidyStatus(t, client, mount, "dry_run=true", "safety_buffer=0")
	if dry["found"] != json1 || dry["deleted"] != json0 {
		t.Errorf("dry run status: %v; want 1 found, none deleted", dry)
	}
	if _, ok := dd.key(orphan); !ok {
		t.Fatal("the dry run deleted the key")
	}
	status := tidyStatus(t, client, mount, "safety_buffer=0")
	if status["found"] != json1 || status["deleted"] != json1 || status["failed"] != json0 || status["state"] != "finished" {
		t.Errorf("tidy status: %v; want 1 found and deleted", status)
	}
	dd.waitKeysGone(t, 5*time.Second, orphan)
	for _, id := range []string{str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"), otherMount} {
		if _, ok := dd.key(id); !ok {
			t.Errorf("tidy deleted key %s, which it must not touch", id)
		}
	}
}

// TestForceRevokedLeaseEndsAtItsTTL: a lease force-revoked while Datadog
// refuses every deletion is forgotten by Vault, its keys still valid; they
// die at the lease's ttl (tidy, once the recorded expiry has passed), not
// at its max_ttl a day later.
func TestForceRevokedLeaseEndsAtItsTTL(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	cli(t, "write", mount+"/roles/r", "scopes=dashboards_read", "api_key_mode=dynamic", "ttl=5s", "max_ttl=24h")
	creds := readCreds(t, client, mount+"/creds/r")
	ids := credentialIDs(creds.Data)

	for _, op := range []string{"DeleteCurrentUserApplicationKey", "DeleteAPIKey"} {
		if _, err := dd.AddFault(emulator.Fault{Operation: op, Action: emulator.FaultError, Status: http.StatusForbidden}); err != nil {
			t.Fatal(err)
		}
	}
	cli(t, "lease", "revoke", "-force", "-prefix", creds.LeaseID)
	dd.ClearFaults()
	for _, id := range ids {
		if _, ok := dd.key(id); !ok {
			t.Fatalf("key %s was deleted although Datadog refused every deletion", id)
		}
	}

	// The ttl (5 s) and the grace for Vault to register a lease (10 s) pass.
	time.Sleep(16 * time.Second)
	if deleted := runTidy(t, client, mount, "0s"); deleted != len(ids) {
		t.Errorf("tidy deleted %d keys, want the forgotten lease's %d", deleted, len(ids))
	}
	for _, id := range ids {
		if k, ok := dd.key(id); ok {
			t.Errorf("%s %s of a lease forgotten past its ttl is still in Datadog", k.Kind, id)
		}
	}
}
