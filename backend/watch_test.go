package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// watchNow runs a watch synchronously, as the periodic function would in
// the background, and returns watch/status.
func (env *testEnv) watchNow(t *testing.T) map[string]interface{} {
	t.Helper()
	sess, err := env.b.session(context.Background(), env.storage)
	if err != nil || sess == nil {
		t.Fatalf("no session for a watch run: %v", err)
	}
	status := &watchStatus{State: "running", StartedAt: time.Now().UTC()}
	env.b.watch.mu.Lock()
	env.b.watch.last = status
	env.b.watch.mu.Unlock()
	env.b.runWatch(context.Background(), env.storage, sess, status)
	return env.mustDo(t, logical.ReadOperation, "watch/status", nil).Data
}

// record reads the engine's record of an issued lease.
func (env *testEnv) record(t *testing.T, creds *logical.Response) *credentialRecord {
	t.Helper()
	rec, err := getRecord(context.Background(), env.storage, creds.Secret.InternalData["record"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// leaseKeys are the Datadog ids of a lease's objects.
func leaseKeys(creds *logical.Response) []string {
	var ids []string
	for _, field := range []string{"application_key_id", "api_key_id", "access_token_id"} {
		if id, _ := creds.Data[field].(string); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

func (env *testEnv) anyKeyExists(ids []string) bool {
	for _, id := range ids {
		if env.keyExists(id) {
			return true
		}
	}
	return false
}

// A watch run deletes every lease's credential that Datadog flagged as
// leaked, whichever of its keys leaked and whatever its kind, and leaves
// clean ones; the leases' renewals are then refused, saying why, and their
// revocations succeed.
func TestWatchKillsLeakedCredentials(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	sa := env.createServiceAccountWithRole(t, "Datadog Admin Role")
	roles := map[string]map[string]interface{}{
		"app":   {"scopes": "dashboards_read", "api_key_mode": "dynamic"},
		"sa":    {"credential_type": "service_account_application_key", "service_account_id": sa, "scopes": "dashboards_read", "api_key_mode": "dynamic"},
		"pat":   {"credential_type": "personal_access_token", "scopes": "dashboards_read"},
		"sat":   {"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read"},
		"agent": {"credential_type": "api_key", "api_key_mode": "dynamic"},
	}
	leaks := map[string]string{"app": "api_key_id", "sa": "application_key_id", "pat": "access_token_id", "sat": "access_token_id", "agent": "api_key_id"}
	leased := map[string]*logical.Response{}
	for name, data := range roles {
		env.writeRole(t, name, data)
		leased[name] = env.mustDo(t, logical.ReadOperation, "creds/"+name, nil)
		env.emu.MarkLeaked(leased[name].Data[leaks[name]].(string), "github")
	}
	clean := env.mustDo(t, logical.ReadOperation, "creds/app", nil)

	status := env.watchNow(t)
	if status["state"] != "finished" || status["checked"] != 6 || status["leaked"] != 5 || status["idle"] != 0 || status["failed"] != 0 {
		t.Fatalf("watch status: %v; want 6 checked, 5 leaked", status)
	}
	for name, creds := range leased {
		if env.anyKeyExists(leaseKeys(creds)) {
			t.Errorf("%s: keys of the leaked credential are still in Datadog", name)
		}
		rec := env.record(t, creds)
		if rec.Killed == nil || rec.Killed.Cause != causeLeaked || !rec.Killed.Deleted {
			t.Errorf("%s: record after the kill: %+v", name, rec.Killed)
		}
		want := []string{"leaked", creds.Data[leaks[name]].(string), "request new credentials"}
		if name == "pat" || name == "sat" { // tokens are read with their LeakedKey: the refusal says where
			want = append(want, "in github")
		}
		renewed, err := env.renew(t, creds)
		wantUserError(t, renewed, err, want...)
		if resp, err := env.revoke(t, creds); err != nil || resp.IsError() {
			t.Errorf("%s: revoking the killed lease: %v %v", name, err, resp)
		}
		if env.record(t, creds) != nil {
			t.Errorf("%s: the record outlived the revocation", name)
		}
	}
	if !env.keyExists(clean.Data["application_key_id"].(string)) || env.record(t, clean).Killed != nil {
		t.Error("the watch killed a clean lease")
	}
	if renewed, err := env.renew(t, clean); err != nil || renewed.IsError() {
		t.Errorf("renewing the clean lease: %v %v", err, renewed)
	}
}

// Each renewal reads its credential's state: a leaked one is deleted at
// once, the renewal refused with the leak (a token's with where it was
// found), and later renewals refused from the record.
func TestRenewKillsLeakedCredential(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"watch_interval": 0})
	env.writeRole(t, "pat", map[string]interface{}{"credential_type": "personal_access_token", "scopes": "dashboards_read", "ttl": "10m"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/pat", nil)
	if renewed, err := env.renew(t, creds); err != nil || renewed.IsError() {
		t.Fatalf("renewing a clean token: %v %v", err, renewed)
	}
	id := creds.Data["access_token_id"].(string)
	env.emu.MarkLeaked(id, "gitlab")

	renewed, err := env.renew(t, creds)
	wantUserError(t, renewed, err, "cannot renew", "leaked", id, "found", "in gitlab", "request new credentials")
	if env.keyExists(id) {
		t.Error("the leaked token is still live after the refused renewal")
	}
	if status, _ := env.call(t, http.MethodGet, "/api/v1/dashboard", "", map[string]string{"Authorization": "Bearer " + creds.Data["access_token"].(string)}); status != http.StatusUnauthorized {
		t.Errorf("the leaked token still authenticates: HTTP %d", status)
	}
	renewed, err = env.renew(t, creds)
	wantUserError(t, renewed, err, "deleted this lease's credential in Datadog", "leaked", "gitlab")
	if resp, err := env.revoke(t, creds); err != nil || resp.IsError() {
		t.Errorf("revoking the killed lease: %v %v", err, resp)
	}
}

// A lease is idle when every one of its keys went unused for the role's
// idle_ttl (since creation when never used); one used key keeps it; roles
// without idle_ttl keep unused credentials; a renewal kills an idle one too.
func TestWatchKillsIdleCredentials(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "idle", map[string]interface{}{"scopes": "dashboards_read", "idle_ttl": "1m", "api_key_mode": "dynamic"})
	env.writeRole(t, "forever", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic"})
	unused := env.mustDo(t, logical.ReadOperation, "creds/idle", nil)
	used := env.mustDo(t, logical.ReadOperation, "creds/idle", nil)
	halfUsed := env.mustDo(t, logical.ReadOperation, "creds/idle", nil)
	young := env.mustDo(t, logical.ReadOperation, "creds/idle", nil)
	noPolicy := env.mustDo(t, logical.ReadOperation, "creds/forever", nil)
	renewedIdle := env.mustDo(t, logical.ReadOperation, "creds/idle", nil)
	for _, creds := range []*logical.Response{unused, used, halfUsed, noPolicy, renewedIdle} {
		for _, id := range leaseKeys(creds) {
			env.emu.Backdate(id, 2*time.Minute)
		}
	}
	// Used now: both keys; halfUsed: its application key alone, with the
	// engine's own API key.
	if got := env.statusWith(t, "/api/v2/validate_keys", used.Data["api_key"].(string), used.Data["application_key"].(string)); got != http.StatusOK {
		t.Fatalf("using the keys: HTTP %d", got)
	}
	env.statusWith(t, "/api/v2/validate_keys", env.emu.APIKey(), halfUsed.Data["application_key"].(string))

	renewed, err := env.renew(t, renewedIdle)
	wantUserError(t, renewed, err, "not used for", "idle_ttl of 1m0s", "never used since its creation")
	if env.anyKeyExists(leaseKeys(renewedIdle)) {
		t.Error("the idle credential refused a renewal is still in Datadog")
	}

	status := env.watchNow(t)
	if status["idle"] != 1 || status["leaked"] != 0 || status["failed"] != 0 || status["checked"] != 5 {
		t.Errorf("watch status: %v; want 5 checked, 1 idle", status)
	}
	if env.anyKeyExists(leaseKeys(unused)) {
		t.Error("the unused credential is still in Datadog")
	}
	for name, creds := range map[string]*logical.Response{"used": used, "half used": halfUsed, "young": young, "without idle_ttl": noPolicy} {
		for _, id := range leaseKeys(creds) {
			if !env.keyExists(id) {
				t.Errorf("%s: key %s was deleted", name, id)
			}
		}
		if renewed, err := env.renew(t, creds); err != nil || renewed.IsError() {
			t.Errorf("%s: renewal refused: %v %v", name, err, renewed)
		}
	}
	renewed, err = env.renew(t, unused)
	wantUserError(t, renewed, err, "deleted this lease's credential", "not used for", "idle_ttl")
	if rec := env.record(t, unused); rec.Killed == nil || rec.Killed.Cause != causeIdle {
		t.Errorf("idle lease's record: %+v", rec.Killed)
	}
}

// A deletion Datadog refuses leaves the record marked: renewals are refused
// at once, and the next run deletes the credential.
func TestWatchRetriesAFailedKill(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.emu.MarkLeaked(creds.Data["application_key_id"].(string), "")
	fault := &faultyClient{deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable}}
	env.injectFaults(fault)

	status := env.watchNow(t)
	if status["leaked"] != 1 || status["failed"] != 1 || status["state"] != "error" || !strings.Contains(status["error"].(string), "503") {
		t.Errorf("watch status with deletions failing: %v", status)
	}
	if rec := env.record(t, creds); rec.Killed == nil || rec.Killed.Deleted {
		t.Fatalf("record after a failed kill: %+v", rec.Killed)
	}
	renewed, err := env.renew(t, creds)
	wantUserError(t, renewed, err, "is deleting this lease's credential", "leaked")

	fault.deleteFails = nil
	status = env.watchNow(t)
	if status["failed"] != 0 || status["state"] != "finished" {
		t.Errorf("second run: %v", status)
	}
	if env.anyKeyExists(leaseKeys(creds)) || !env.record(t, creds).Killed.Deleted {
		t.Error("the second run did not finish the kill")
	}
}

// The watch waits out Datadog's rate limits rather than failing: every
// lease is checked though the limit is far below the run's calls.
func TestWatchWaitsOutRateLimits(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	for range 4 {
		env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	}
	for _, group := range []string{"application_keys", "api_keys"} {
		if err := env.emu.SetRateLimit(group, emulator.RateLimit{Limit: 2, Period: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	status := env.watchNow(t)
	if status["checked"] != 4 || status["failed"] != 0 || status["state"] != "finished" {
		t.Errorf("watch status under a rate limit: %v", status)
	}
	if env.emu.Answers(http.StatusTooManyRequests) > 2 {
		t.Errorf("the watch met %d 429s: it should wait for the window rather than send", env.emu.Answers(http.StatusTooManyRequests))
	}
}

// The periodic function starts a run once watch_interval has passed since
// the last (or since the engine started), never two at once, never with
// watch_interval 0 nor on a performance standby.
func TestWatchRunsEveryInterval(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["watch_interval"]; got != int64(300) {
		t.Errorf("default watch_interval = %v, want 300", got)
	}
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.emu.MarkLeaked(creds.Data["application_key_id"].(string), "")

	env.rollbackOnSchedule(t)
	status := env.mustDo(t, logical.ReadOperation, "watch/status", nil).Data
	due := env.b.started.Add(defaultWatchInterval - watchSlack).UTC().Format(time.RFC3339)
	if status["state"] != "never" || status["next_run_at"] != due || status["started_at"] != nil {
		t.Fatalf("watch status before its interval: %v; want state never, next run at %s", status, due)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"watch_interval": "1m"})
	env.b.started = time.Now().Add(-55 * time.Second) // within the slack of a minute's tick
	env.b.System().(*logical.StaticSystemView).ReplicationStateVal = consts.ReplicationPerformanceStandby
	env.rollbackOnSchedule(t)
	if status := env.mustDo(t, logical.ReadOperation, "watch/status", nil).Data; status["state"] != "never" {
		t.Fatalf("a watch ran on a performance standby: %v", status)
	}
	env.b.System().(*logical.StaticSystemView).ReplicationStateVal = 0
	env.rollbackOnSchedule(t)
	status = env.waitWatch(t)
	if status["leaked"] != 1 || env.keyExists(creds.Data["application_key_id"].(string)) {
		t.Errorf("periodic watch: %v", status)
	}
	started := status["started_at"]
	env.rollbackOnSchedule(t)
	if again := env.waitWatch(t)["started_at"]; again != started {
		t.Error("a watch ran again before its interval")
	}

	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"watch_interval": 0})
	env.b.watch.last.StartedAt = time.Now().Add(-time.Hour)
	env.rollbackOnSchedule(t)
	if env.b.watch.last.StartedAt.After(time.Now().Add(-time.Minute)) {
		t.Error("a watch ran with watch_interval 0")
	}
	if status := env.mustDo(t, logical.ReadOperation, "watch/status", nil).Data; status["next_run_at"] != nil || status["state"] != "finished" {
		t.Errorf("watch status with watch_interval 0: %v; want the last run, and no next run", status)
	}
}

// waitWatch waits for the running watch to finish and returns its status.
func (env *testEnv) waitWatch(t *testing.T) map[string]interface{} {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp := env.mustDo(t, logical.ReadOperation, "watch/status", nil)
		if state := resp.Data["state"]; state != "running" && state != "never" {
			return resp.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch still running after 30s: %v", resp)
		}
	}
}

// watch_interval and idle_ttl are checked before anything is stored or
// asked of Datadog.
func TestWatchSettingsBadInputChangesNothing(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "max_ttl": "1h"})
	before := env.snapshot(t)
	calls := env.emu.Requests()
	for _, tc := range []struct {
		path string
		data map[string]interface{}
		want []string
	}{
		{"config", map[string]interface{}{"watch_interval": "30s"}, []string{"watch_interval", "1m"}},
		{"config", map[string]interface{}{"watch_interval": "-1m"}, []string{"watch_interval"}},
		{"roles/r", map[string]interface{}{"idle_ttl": "30s"}, []string{"idle_ttl", "1m"}},
		{"roles/r", map[string]interface{}{"idle_ttl": "-1m"}, []string{"idle_ttl"}},
		{"roles/r", map[string]interface{}{"idle_ttl": "2h"}, []string{"idle_ttl", "max_ttl"}},
		{"roles/r2", map[string]interface{}{"scopes": "dashboards_read", "max_ttl": "1h", "idle_ttl": "2h"}, []string{"idle_ttl", "max_ttl"}},
	} {
		resp, err := env.do(t, logical.UpdateOperation, tc.path, tc.data)
		if tc.path == "roles/r2" {
			resp, err = env.do(t, logical.CreateOperation, tc.path, tc.data)
		}
		wantUserError(t, resp, err, tc.want...)
	}
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused write changed storage")
	}
	if n := env.emu.Requests() - calls; n != 0 {
		t.Errorf("refused writes made %d Datadog calls", n)
	}

	env.mustDo(t, logical.UpdateOperation, "roles/r", map[string]interface{}{"idle_ttl": "30m"})
	if got := env.mustDo(t, logical.ReadOperation, "roles/r", nil).Data["idle_ttl"]; got != int64(1800) {
		t.Errorf("role idle_ttl = %v, want 1800", got)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"watch_interval": "2m"})
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["watch_interval"]; got != int64(120) {
		t.Errorf("watch_interval = %v, want 120", got)
	}
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": "10s"})
	if got := env.mustDo(t, logical.ReadOperation, "config", nil).Data["watch_interval"]; got != int64(120) {
		t.Errorf("watch_interval after an update of another field = %v, want 120", got)
	}
}

func TestJudge(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { at := now.Add(-d); return &at }
	app := datadogObject{Kind: kindApplicationKey, ID: "app-id", Name: "vault-r-x"}
	api := datadogObject{Kind: kindAPIKey, ID: "api-id", Name: "vault-r-x"}
	objects := []datadogObject{app, api}
	for _, tc := range []struct {
		name   string
		states []objectState
		idle   time.Duration
		want   string // cause, "" to live
	}{
		{"clean and used", []objectState{{CreatedAt: *ago(time.Hour), LastUsed: ago(time.Minute)}, {CreatedAt: *ago(time.Hour)}}, 30 * time.Minute, ""},
		{"one leaked", []objectState{{CreatedAt: *ago(time.Hour)}, {CreatedAt: *ago(time.Hour), Leak: &leakInfo{ID: "l"}}}, 0, causeLeaked},
		{"leak wins over use", []objectState{{CreatedAt: *ago(time.Hour), LastUsed: ago(time.Second), Leak: &leakInfo{ID: "l"}}, {CreatedAt: *ago(time.Hour)}}, time.Hour, causeLeaked},
		{"all unused", []objectState{{CreatedAt: *ago(time.Hour)}, {CreatedAt: *ago(time.Hour), LastUsed: ago(40 * time.Minute)}}, 30 * time.Minute, causeIdle},
		{"idle off", []objectState{{CreatedAt: *ago(time.Hour)}, {CreatedAt: *ago(time.Hour)}}, 0, ""},
		{"young", []objectState{{CreatedAt: *ago(time.Minute)}, {CreatedAt: *ago(time.Hour)}}, 30 * time.Minute, ""},
		{"creation unknown", []objectState{{}, {CreatedAt: *ago(time.Hour)}}, 30 * time.Minute, ""},
	} {
		got := judge(objects, tc.states, tc.idle, now)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: killed (%+v), want it to live", tc.name, got)
		case tc.want != "" && (got == nil || got.Cause != tc.want):
			t.Errorf("%s: %+v, want cause %s", tc.name, got, tc.want)
		}
	}
	got := judge(objects, []objectState{{CreatedAt: *ago(time.Hour)}, {CreatedAt: *ago(time.Hour), LastUsed: ago(40 * time.Minute)}}, 30*time.Minute, now)
	for _, want := range []string{"not used for 40m0s", "idle_ttl of 30m0s", "application key app-id never used since its creation at 2026-06-01T11:00:00Z", "API key api-id last used at 2026-06-01T11:20:00Z"} {
		if !strings.Contains(got.Reason, want) {
			t.Errorf("idle reason %q does not say %q", got.Reason, want)
		}
	}
}
