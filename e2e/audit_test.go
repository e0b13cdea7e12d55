package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// loginAs enables userpass at a path of the test's own, with a user whose
// policy may issue credentials at mount, and returns a client logged in as
// that user (a token with an entity and display name userpass-<user>) and
// its entity id and display name.
func loginAs(t *testing.T, root *api.Client, mount, user string) (*api.Client, string, string) {
	t.Helper()
	auth := "userpass-" + mount
	if err := root.Sys().EnableAuthWithOptions(auth, &api.EnableAuthOptions{Type: "userpass"}); err != nil {
		t.Fatalf("enabling userpass at %s: %v", auth, err)
	}
	t.Cleanup(func() { root.Sys().DisableAuth(auth) })
	policy := fmt.Sprintf("path %q {\n  capabilities = [\"read\", \"update\"]\n}\n", mount+"/creds/*")
	if err := root.Sys().PutPolicy(mount+"-issuer", policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Sys().DeletePolicy(mount + "-issuer") })
	write(t, root, "auth/"+auth+"/users/"+user, map[string]any{"password": "not-a-datadog-secret", "token_policies": mount + "-issuer"})

	client, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	login, err := client.Logical().Write("auth/"+auth+"/login/"+user, map[string]any{"password": "not-a-datadog-secret"})
	if err != nil || login == nil || login.Auth == nil {
		noteError(err)
		t.Fatalf("logging in as %s: %v", user, err)
	}
	client.SetToken(login.Auth.ClientToken)
	self, err := client.Auth().Token().LookupSelf()
	if err != nil {
		noteError(err)
		t.Fatalf("looking up %s's token: %v", user, err)
	}
	displayName, _ := self.Data["display_name"].(string)
	return client, login.Auth.EntityID, displayName
}

// waitEvents waits until Datadog holds n events and returns them.
func (d *datadog) waitEvents(t *testing.T, n int) []emulator.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		events := d.Events()
		if len(events) >= n {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("Datadog holds %d events after 30s, want %d", len(events), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// configCount reads a count config read shows.
func configCount(t *testing.T, client *api.Client, mount, field string) int {
	t.Helper()
	cfg, err := client.Logical().Read(mount + "/config")
	if err != nil || cfg == nil {
		noteError(err)
		t.Fatalf("reading %s/config: %v", mount, err)
	}
	return jsonInt(t, cfg.Data[field])
}

// TestAuditEvents turns audit_events on and follows one credential: its
// issue to a userpass user, a renewal and the revocation each leave an
// event in Datadog naming the role, the user's display name and entity,
// the keys and the lease, with no secret in it; so does a leaked
// credential's early death.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	dd, root, mount := startEngine(t)
	cli(t, "write", mount+"/config", "audit_events=true")
	write(t, root, mount+"/roles/agent", map[string]any{"scopes": "dashboards_read,monitors_read", "ttl": "10m", "max_ttl": "1h", "api_key_mode": "dynamic"})
	user, entityID, displayName := loginAs(t, root, mount, "jane")
	if entityID == "" || !strings.HasSuffix(displayName, "-jane") {
		t.Fatalf("jane's token has entity %q and display name %q", entityID, displayName)
	}

	creds, err := user.Logical().Write(mount+"/creds/agent", map[string]any{"scopes": "monitors_read"})
	noteError(err)
	if creds != nil {
		noteIssuedCredentials(creds.Data)
	}
	if err != nil || creds == nil || creds.LeaseID == "" {
		t.Fatalf("issuing to jane: %v", err)
	}
	issue := dd.waitEvents(t, 1)[0]
	if _, err := root.Sys().Renew(creds.LeaseID, 0); err != nil {
		noteError(err)
		t.Fatalf("renewing: %v", err)
	}
	renew := dd.waitEvents(t, 2)[1]
	if err := root.Sys().Revoke(creds.LeaseID); err != nil {
		noteError(err)
		t.Fatalf("revoking: %v", err)
	}
	events := dd.waitEvents(t, 3)
	revoke := events[2]

	appID, apiID, name := str(t, creds.Data, "application_key_id"), str(t, creds.Data, "api_key_id"), str(t, creds.Data, "name")
	for _, tc := range []struct {
		ev   emulator.Event
		kind string
		text []string
	}{
		{issue, "issue", []string{"reason: issued by a creds request", "scopes: monitors_read", "vault_mount: " + mount + "/", "lease_expires_at: "}},
		{renew, "renew", []string{"reason: lease renewed", "lease_expires_at: "}},
		{revoke, "revoke", []string{"reason: the lease ended", "lease_id: " + creds.LeaseID}},
	} {
		want := append(tc.text, "event: "+tc.kind, "role: agent", "vault_display_name: "+displayName, "vault_entity_id: "+entityID,
			appID+" ("+name+")", apiID+" ("+name+")", "lease_max_expires_at: ")
		for _, w := range want {
			if !strings.Contains(tc.ev.Text, w) {
				t.Errorf("%s event does not say %q:\n%s", tc.kind, w, tc.ev.Text)
			}
		}
		for _, tag := range []string{"vault_event:" + tc.kind, "vault_role:agent", "vault_entity_id:" + entityID, "datadog_key_id:" + appID, "datadog_key_id:" + apiID} {
			if !slices.Contains(tc.ev.Tags, tag) {
				t.Errorf("%s event tags %v lack %s", tc.kind, tc.ev.Tags, tag)
			}
		}
		if tc.ev.AggregationKey != issue.AggregationKey {
			t.Errorf("%s event aggregation key %q, want the lease's %q", tc.kind, tc.ev.AggregationKey, issue.AggregationKey)
		}
	}
	// A credential the engine kills early (here a leak found by a renewal)
	// leaves an event saying why, naming the holder, again without secrets.
	leaked, err := user.Logical().Read(mount + "/creds/agent")
	noteError(err)
	if err != nil || leaked == nil {
		t.Fatalf("issuing to jane: %v", err)
	}
	noteIssuedCredentials(leaked.Data)
	leakedID := str(t, leaked.Data, "application_key_id")
	dd.MarkLeaked(leakedID, "github")
	if _, err := root.Sys().Renew(leaked.LeaseID, 0); err == nil || !strings.Contains(err.Error(), "leaked") {
		t.Errorf("renewing the leaked credential: %v, want a refusal naming the leak", err)
	}
	events = dd.waitEvents(t, 5)
	leak := events[4]
	if !strings.HasPrefix(leak.Title, "Vault deleted leaked Datadog application key of role agent") || leak.AlertType != "error" ||
		!slices.Contains(leak.Tags, "vault_event:leak") || !slices.Contains(leak.Tags, "datadog_key_id:"+leakedID) ||
		!strings.Contains(leak.Text, "vault_display_name: "+displayName) || !strings.Contains(leak.Text, "vault_entity_id: "+entityID) ||
		!strings.Contains(leak.Text, "reason: Datadog flagged its application key "+leakedID) {
		t.Errorf("leak event:\n%s\n%s\n%v", leak.Title, leak.Text, leak.Tags)
	}
	cli(t, "lease", "revoke", leaked.LeaseID)
	events = dd.waitEvents(t, 6)

	// No event carries a secret: the credentials', or the engine's own.
	for _, ev := range events {
		all := ev.Title + ev.Text + strings.Join(ev.Tags, ",") + ev.AggregationKey
		for _, secret := range []string{str(t, creds.Data, "application_key"), str(t, creds.Data, "api_key"),
			str(t, leaked.Data, "application_key"), str(t, leaked.Data, "api_key"), dd.APIKey(), dd.AppKey()} {
			if strings.Contains(all, secret) {
				t.Errorf("event %q carries a secret", ev.Title)
			}
		}
	}
	if sent := configCount(t, root, mount, "audit_events_sent"); sent != 6 {
		t.Errorf("config read: audit_events_sent=%d, want 6 (issue, renew, revoke; issue, leak, revoke)", sent)
	}

	// Datadog refusing events fails no Vault request; the failures are counted.
	if _, err := dd.AddFault(emulator.Fault{Operation: "CreateEvent", Action: emulator.FaultError, Status: 400}); err != nil {
		t.Fatal(err)
	}
	again := readCreds(t, root, mount+"/creds/agent")
	if err := root.Sys().Revoke(again.LeaseID); err != nil {
		noteError(err)
		t.Fatalf("revoking with Datadog refusing events: %v", err)
	}
	dd.waitKeysGone(t, 10*time.Second, credentialIDs(again.Data)...)
	for deadline := time.Now().Add(30 * time.Second); configCount(t, root, mount, "audit_events_failed") != 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("audit_events_failed is %d after 30s, want 2", configCount(t, root, mount, "audit_events_failed"))
		}
	}
}
