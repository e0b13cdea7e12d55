package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// waitEvents waits until the emulator holds n events, and returns them.
func (env *testEnv) waitEvents(t *testing.T, n int) []emulator.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		events := env.emu.Events()
		if len(events) >= n || time.Now().After(deadline) {
			if len(events) != n {
				t.Fatalf("the emulator holds %d events, want %d: %+v", len(events), n, events)
			}
			return events
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCounts waits until config read shows the given event counts.
func (env *testEnv) waitCounts(t *testing.T, sent, failed int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data := env.mustDo(t, logical.ReadOperation, "config", nil).Data
		if data["audit_events_sent"] == sent && data["audit_events_failed"] == failed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("config read shows audit_events_sent=%v audit_events_failed=%v, want %d and %d",
				data["audit_events_sent"], data["audit_events_failed"], sent, failed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireNoSecret fails if an event carries any of the secrets.
func requireNoSecret(t *testing.T, events []emulator.Event, secrets ...string) {
	t.Helper()
	for _, ev := range events {
		all := ev.Title + "\n" + ev.Text + "\n" + strings.Join(ev.Tags, "\n") + "\n" + ev.AggregationKey
		for _, s := range secrets {
			if s != "" && strings.Contains(all, s) {
				t.Errorf("event %d (%s) carries a secret ending …%s", ev.ID, ev.Title, last4(s))
			}
		}
	}
}

func TestAuditEventsAreOffByDefault(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	resp := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
		t.Fatal(err, renewed)
	}
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	data := env.mustDo(t, logical.ReadOperation, "config", nil).Data
	if data["audit_events"] != false || data["audit_events_sent"] != int64(0) || data["audit_events_failed"] != int64(0) {
		t.Errorf("config read: audit_events=%v sent=%v failed=%v", data["audit_events"], data["audit_events_sent"], data["audit_events_failed"])
	}
	if n := len(env.emu.Events()); n != 0 {
		t.Errorf("%d events posted with audit_events off", n)
	}
}

// TestAuditEventsTellWhoHeldWhichKey: with audit_events on, an issue, a
// renewal and a revocation each post an event naming the role, the Vault
// identity, the keys and the lease's expiry, grouped by one aggregation
// key, with no secret.
func TestAuditEventsTellWhoHeldWhichKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"audit_events": true})
	env.writeRole(t, "agent", map[string]interface{}{"scopes": "dashboards_read,monitors_read", "ttl": "10m", "max_ttl": "1h", "api_key_mode": "dynamic"})

	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.UpdateOperation, Path: "creds/agent", Storage: env.storage, Data: map[string]interface{}{"scopes": "monitors_read"},
		DisplayName: "oidc-jane", EntityID: "6d3b8a2e-0000-4000-8000-00000000e1d1", MountPoint: "datadog/",
	})
	if err != nil || resp.IsError() {
		t.Fatal(err, resp)
	}
	resp.Secret.LeaseID = "datadog/creds/agent/lease-1" // as Vault names it
	issued := time.Now()
	appID, apiID, name := resp.Data["application_key_id"].(string), resp.Data["api_key_id"].(string), resp.Data["name"].(string)

	issue := env.waitEvents(t, 1)[0]
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
		t.Fatal(err, renewed)
	}
	renew := env.waitEvents(t, 2)[1]
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	events := env.waitEvents(t, 3)
	revoke := events[2]
	env.waitCounts(t, 3, 0)

	for _, tc := range []struct {
		ev        emulator.Event
		kind      string
		title     string
		alertType string
		text      []string
	}{
		{issue, "issue", "Vault issued Datadog application key of role agent", "info",
			[]string{"vault_display_name: oidc-jane", "vault_mount: datadog/", "scopes: monitors_read", "reason: issued by a creds request", "lease_expires_at: ", "lease_max_expires_at: "}},
		{renew, "renew", "Vault renewed the lease of Datadog application key of role agent", "info",
			[]string{"vault_display_name: oidc-jane", "lease_id: datadog/creds/agent/lease-1", "reason: lease renewed", "lease_expires_at: "}},
		{revoke, "revoke", "Vault deleted Datadog application key of role agent", "info",
			[]string{"vault_display_name: oidc-jane", "lease_id: datadog/creds/agent/lease-1", "reason: the lease ended"}},
	} {
		ev := tc.ev
		if ev.Title != tc.title || ev.AlertType != tc.alertType || ev.SourceTypeName != "vault" {
			t.Errorf("%s event: title %q, alert_type %s, source %q", tc.kind, ev.Title, ev.AlertType, ev.SourceTypeName)
		}
		want := append(tc.text, "role: agent", "credential_type: application_key", "vault_entity_id: 6d3b8a2e-0000-4000-8000-00000000e1d1",
			"event: "+tc.kind, appID+" ("+name+")", apiID+" ("+name+")")
		for _, w := range want {
			if !strings.Contains(ev.Text, w) {
				t.Errorf("%s event text does not say %q:\n%s", tc.kind, w, ev.Text)
			}
		}
		for _, tag := range []string{"vault_event:" + tc.kind, "vault_role:agent", "credential_type:application_key",
			"vault_entity_id:6d3b8a2e-0000-4000-8000-00000000e1d1", "datadog_key_id:" + appID, "datadog_key_id:" + apiID} {
			if !slices.Contains(ev.Tags, tag) {
				t.Errorf("%s event tags %v lack %s", tc.kind, ev.Tags, tag)
			}
		}
		if ev.AggregationKey != issue.AggregationKey || !strings.HasSuffix(name, strings.TrimPrefix(ev.AggregationKey, "vault-lease-")) {
			t.Errorf("%s event aggregation key %q: want one per lease, the end of its keys' names", tc.kind, ev.AggregationKey)
		}
	}
	// The issue event gives the lease's end: its ttl from now.
	if want := issued.Add(10 * time.Minute).UTC().Format(time.RFC3339); !strings.Contains(issue.Text, "lease_expires_at: "+want) &&
		!strings.Contains(issue.Text, "lease_expires_at: "+issued.Add(10*time.Minute+time.Second).UTC().Format(time.RFC3339)) {
		t.Errorf("issue event does not give the lease's expiry %s:\n%s", want, issue.Text)
	}
	requireNoSecret(t, events, resp.Data["application_key"].(string), resp.Data["api_key"].(string), env.emu.APIKey(), env.emu.AppKey())
}

// blockingEvents holds every event post until released, and can fail them.
type blockingEvents struct {
	datadogAPI
	release  chan struct{}
	inFlight chan struct{}
	fail     error
	mu       sync.Mutex
	posted   []auditEventBody
}

func (f *blockingEvents) SendEvent(ctx context.Context, e auditEventBody) error {
	f.inFlight <- struct{}{}
	select {
	case <-f.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posted = append(f.posted, e)
	return f.fail
}

// TestAuditEventsNeverHoldOrFailTheRequest: a creds read, a renewal and a
// revocation answer while their events still wait to be posted, and
// succeed when posting fails; the failures are counted.
func TestAuditEventsNeverHoldOrFailTheRequest(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"audit_events": true})
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	events := &blockingEvents{release: make(chan struct{}), inFlight: make(chan struct{}, 10), fail: errors.New("Datadog is down")}
	env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
		real, err := newDatadogClient(cfg, logger)
		events.datadogAPI = real
		return events, err
	}
	env.b.reset()

	resp := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
		t.Fatal(err, renewed)
	}
	if _, err := env.revoke(t, resp); err != nil {
		t.Fatal(err)
	}
	// All three answered while their posts were held.
	for range 3 {
		<-events.inFlight
	}
	close(events.release)
	env.waitCounts(t, 0, 3)
	if n := len(env.emu.Events()); n != 0 {
		t.Errorf("%d events reached Datadog", n)
	}
	if len(env.issuedKeys()) != 0 {
		t.Error("the revocation did not delete the keys")
	}
}

// TestAuditTrailCountsWhatItCannotPost: past a full queue, and once the
// plugin stops, events are counted as failed rather than waited for.
func TestAuditTrailCountsWhatItCannotPost(t *testing.T) {
	var trail auditTrail
	events := &blockingEvents{release: make(chan struct{}), inFlight: make(chan struct{}, auditWorkers)}
	post := func(n int) {
		for i := range n {
			trail.post(hclog.NewNullLogger(), auditJob{client: events, kind: auditIssue, details: auditDetails{Role: fmt.Sprint(i)}})
		}
	}
	post(auditWorkers)
	for range auditWorkers {
		<-events.inFlight // every worker holds one
	}
	post(auditQueueLength + 3)
	if sent, failed := trail.counts(); sent != 0 || failed != 3 {
		t.Errorf("with the queue full: sent %d, failed %d; want 0 and 3", sent, failed)
	}
	go func() {
		for range events.inFlight {
		}
	}()
	close(events.release)
	trail.close()
	post(1)
	if sent, failed := trail.counts(); sent != auditWorkers+auditQueueLength || failed != 4 {
		t.Errorf("after close: sent %d, failed %d; want %d and 4", sent, failed, auditWorkers+auditQueueLength)
	}
}

func TestAuditEventsNeedAnAPIKey(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccount(t)
	token := env.serviceAccessToken(t, sa, defaultRootScopes, time.Now().Add(30*24*time.Hour))
	env.mustDo(t, logical.DeleteOperation, "config", nil)
	before, calls := env.snapshot(t), env.emu.Requests()
	resp, err := env.do(t, logical.CreateOperation, "config", map[string]interface{}{
		"access_token": token, "service_account_id": sa, "api_url": env.url, "audit_events": true,
	})
	wantUserError(t, resp, err, "audit_events needs api_key")
	if !sameSnapshot(before, env.snapshot(t)) || env.emu.Requests() != calls {
		t.Error("a refused config write changed storage or called Datadog")
	}
}

// TestAuditEventsOfKilledCredentials: the watch's kill of a leaked
// credential and a renewal's kill of an idle one each post an event that
// names the key, its holder and why it died, never a secret; a clean lease
// gets none.
func TestAuditEventsOfKilledCredentials(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"audit_events": true, "watch_interval": 0})
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "idle_ttl": "1m"})
	leaked := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	idle := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	clean := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.waitEvents(t, 3)

	leakedID := leaked.Data["application_key_id"].(string)
	env.emu.MarkLeaked(leakedID, "github")
	if status := env.watchNow(t); status["leaked"] != 1 || status["idle"] != 0 {
		t.Fatalf("watch status: %v; want 1 leaked", status)
	}
	leak := env.waitEvents(t, 4)[3]
	if leak.AlertType != "error" || !strings.HasPrefix(leak.Title, "Vault deleted leaked Datadog application key of role r") ||
		!strings.Contains(leak.Text, "reason: Datadog flagged its application key "+leakedID) ||
		!strings.Contains(leak.Text, "vault_display_name: token-ci-job") || !slices.Contains(leak.Tags, "vault_event:leak") ||
		!slices.Contains(leak.Tags, "datadog_key_id:"+leakedID) {
		t.Errorf("leak event: %+v", leak)
	}

	idleID := idle.Data["application_key_id"].(string)
	for _, id := range leaseKeys(idle) {
		env.emu.Backdate(id, 2*time.Minute)
	}
	renewed, err := env.renew(t, idle)
	wantUserError(t, renewed, err, "not used for")
	dead := env.waitEvents(t, 5)[4]
	if dead.AlertType != "warning" || !strings.HasPrefix(dead.Title, "Vault deleted idle Datadog application key of role r") ||
		!strings.Contains(dead.Text, "reason: not used for") || !slices.Contains(dead.Tags, "datadog_key_id:"+idleID) {
		t.Errorf("idle event: %+v", dead)
	}
	for _, ev := range env.emu.Events() {
		if slices.Contains(ev.Tags, "datadog_key_id:"+clean.Data["application_key_id"].(string)) && !slices.Contains(ev.Tags, "vault_event:issue") {
			t.Errorf("the clean lease got an event: %+v", ev)
		}
	}
	env.waitCounts(t, 5, 0)
	var secrets []string
	for _, creds := range []*logical.Response{leaked, idle, clean} {
		secrets = append(secrets, creds.Data["application_key"].(string), creds.Data["api_key"].(string))
	}
	requireNoSecret(t, env.emu.Events(), secrets...)
}
