package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// poolEnv is a configured engine against an emulator whose limit of
// application keys per owner is limit, with n service accounts.
func poolEnv(t *testing.T, limit, n int) (*testEnv, []string) {
	t.Helper()
	env := newTestEnvWith(t, emulator.Options{MaxAppKeysPerUser: limit})
	env.configure(t)
	sas := make([]string, n)
	for i := range sas {
		sas[i] = env.createServiceAccount(t)
	}
	return env, sas
}

// counted wraps the real adapter to count the calls that ask Datadog how
// many keys a service account holds.
type counted struct {
	datadogAPI
	counts atomic.Int32
}

func (c *counted) ApplicationKeyCount(ctx context.Context, owner string) (int, int, error) {
	c.counts.Add(1)
	return c.datadogAPI.ApplicationKeyCount(ctx, owner)
}

func (env *testEnv) countCalls() *counted {
	c := &counted{}
	env.b.newClient = func(cfg *datadogConfig, logger hclog.Logger) (datadogAPI, error) {
		real, err := newDatadogClient(cfg, logger)
		c.datadogAPI = real
		return c, err
	}
	env.b.reset()
	return c
}

// serviceAccountCounts reads the role's per-owner counts.
func (env *testEnv) serviceAccountCounts(t *testing.T, role string) map[string]int {
	t.Helper()
	resp := env.mustDo(t, logical.ReadOperation, "roles/"+role, nil)
	counts, ok := resp.Data["service_account_counts"].(map[string]int)
	if !ok {
		t.Fatalf("role read has no service_account_counts: %v", resp.Data)
	}
	return counts
}

// emuKey is the live key of that id in Datadog, or nil.
func (env *testEnv) emuKey(id string) *emulator.Key {
	for _, k := range env.emu.Keys() {
		if k.ID == id {
			return &k
		}
	}
	return nil
}

// ownedKeys counts the engine's application keys in Datadog per owner.
func (env *testEnv) ownedKeys() map[string]int {
	owners := map[string]int{}
	for _, k := range env.issuedKeys() {
		if k.Kind == emulator.KindApplicationKey {
			owners[k.OwnerID]++
		}
	}
	return owners
}

func TestPoolRoleFields(t *testing.T) {
	env, sas := poolEnv(t, 0, 3)
	a, b, c := sas[0], sas[1], sas[2]
	pool := map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read"}
	with := func(extra map[string]interface{}) map[string]interface{} {
		out := map[string]interface{}{}
		for k, v := range pool {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}

	before := env.snapshot(t)
	many := make([]string, maxPoolSize+1)
	for i := range many {
		many[i] = fmt.Sprintf("sa-%d", i)
	}
	calls := env.emu.Requests()
	for _, tc := range []struct {
		role map[string]interface{}
		want []string
	}{
		{with(map[string]interface{}{"service_account_id": a, "service_account_ids": b + "," + c}), []string{"service_account_id and service_account_ids are exclusive"}},
		{map[string]interface{}{"credential_type": "service_access_token", "scopes": "dashboards_read", "service_account_ids": a + "," + b},
			[]string{"service_account_ids applies only to credential_type service_account_application_key", "access tokens"}},
		{map[string]interface{}{"scopes": "dashboards_read", "service_account_ids": a}, []string{"service_account_ids applies only"}},
		{with(map[string]interface{}{"service_account_ids": strings.Join(many, ",")}), []string{"service_account_ids names 101 service accounts; at most 100"}},
		{with(nil), []string{"service_account_id is required", "service_account_ids"}},
	} {
		resp, err := env.do(t, logical.CreateOperation, "roles/p", tc.role)
		wantUserError(t, resp, err, tc.want...)
	}
	if env.emu.Requests() != calls {
		t.Error("role writes refused on their fields alone called Datadog")
	}
	for _, tc := range []struct {
		ids  string
		want string
	}{
		{a + ",no-such-id", `service_account_ids "no-such-id": no such Datadog user`},
		{a + "," + env.emu.UserID(), fmt.Sprintf("service_account_ids %q is a Datadog user, not a service account", env.emu.UserID())},
	} {
		resp, err := env.do(t, logical.CreateOperation, "roles/p", with(map[string]interface{}{"service_account_ids": tc.ids}))
		wantUserError(t, resp, err, tc.want)
	}
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused role write changed storage")
	}

	// Duplicates and blanks are dropped; the order is kept.
	env.writeRole(t, "p", with(map[string]interface{}{"service_account_ids": " " + b + "," + a + ",," + b}))
	read := env.mustDo(t, logical.ReadOperation, "roles/p", nil).Data
	if ids := read["service_account_ids"].([]string); !slices.Equal(ids, []string{b, a}) || read["service_account_id"] != "" {
		t.Errorf("read: service_account_ids %v, service_account_id %q; want [b a] and none", ids, read["service_account_id"])
	}
	if counts := read["service_account_counts"].(map[string]int); len(counts) != 2 || counts[a] != 0 || counts[b] != 0 {
		t.Errorf("service_account_counts %v, want 0 for each of the two", counts)
	}

	// Setting one replaces the other, either way.
	env.mustDo(t, logical.UpdateOperation, "roles/p", map[string]interface{}{"service_account_id": c})
	read = env.mustDo(t, logical.ReadOperation, "roles/p", nil).Data
	if ids := read["service_account_ids"].([]string); len(ids) != 0 || read["service_account_id"] != c {
		t.Errorf("after setting service_account_id: %v", read)
	}
	if counts := read["service_account_counts"].(map[string]int); len(counts) != 1 {
		t.Errorf("service_account_counts of a one-account role: %v", counts)
	}
	env.mustDo(t, logical.UpdateOperation, "roles/p", map[string]interface{}{"service_account_ids": a + "," + c})
	read = env.mustDo(t, logical.ReadOperation, "roles/p", nil).Data
	if ids := read["service_account_ids"].([]string); !slices.Equal(ids, []string{a, c}) || read["service_account_id"] != "" {
		t.Errorf("after setting service_account_ids: %v", read)
	}

	// Other kinds show neither the list nor the counts.
	env.writeRole(t, "sat", map[string]interface{}{"credential_type": "service_access_token", "scopes": "dashboards_read", "service_account_id": a})
	read = env.mustDo(t, logical.ReadOperation, "roles/sat", nil).Data
	if _, has := read["service_account_ids"]; has {
		t.Errorf("a service_access_token role shows service_account_ids: %v", read)
	}
	if _, has := read["service_account_counts"]; has {
		t.Errorf("a service_access_token role shows service_account_counts: %v", read)
	}
}

// TestPoolIssuesPastTheLimit: three service accounts of which Datadog
// allows three keys each hold nine live keys, spread over them, all
// working; Datadog is asked for counts only near the limit; the tenth is
// refused without a trace; revocations make room again.
func TestPoolIssuesPastTheLimit(t *testing.T) {
	env, sas := poolEnv(t, 3, 3)
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": strings.Join(sas, ",")})
	calls := env.countCalls()

	var leases []*logical.Response
	issue := func() *logical.Response {
		t.Helper()
		resp := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
		leases = append(leases, resp)
		return resp
	}
	for range 6 {
		issue()
	}
	if n := calls.counts.Load(); n != 0 {
		t.Errorf("%d count calls to Datadog below 2 keys per service account, want none", n)
	}
	for range 3 {
		issue()
	}
	if n := calls.counts.Load(); n < 3 {
		t.Errorf("%d count calls to Datadog for the keys at the limit, want one each at least", n)
	}

	owners := map[string]int{}
	for _, resp := range leases {
		owner := resp.Data["service_account_id"].(string)
		owners[owner]++
		if key := env.emuKey(resp.Data["application_key_id"].(string)); key == nil || key.OwnerID != owner {
			t.Errorf("key %v in Datadog: %+v, want owned by %s", resp.Data["application_key_id"], key, owner)
		}
		if got := env.statusWith(t, "/api/v1/dashboard", resp.Data["api_key"].(string), resp.Data["application_key"].(string)); got != http.StatusOK {
			t.Errorf("a pool key of %s: HTTP %d, want 200", owner, got)
		}
	}
	for _, sa := range sas {
		if owners[sa] != 3 {
			t.Errorf("leases per service account %v, want 3 each", owners)
		}
	}
	if counts := env.serviceAccountCounts(t, "p"); len(counts) != 3 || counts[sas[0]] != 3 || counts[sas[1]] != 3 || counts[sas[2]] != 3 {
		t.Errorf("service_account_counts %v, want 3 each", counts)
	}

	resp, err := env.do(t, logical.ReadOperation, "creds/p", nil)
	wantUserError(t, resp, err, "every service account", "limit of 3 application keys per owner")
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Errorf("the refused request left records %v", ids)
	}
	if got := env.ownedKeys(); len(got) != 3 || got[sas[0]] != 3 || got[sas[1]] != 3 || got[sas[2]] != 3 {
		t.Errorf("the engine's keys in Datadog per owner: %v", got)
	}

	// A revocation makes room where it was.
	freed := leases[4].Data["service_account_id"].(string)
	if _, err := env.revoke(t, leases[4]); err != nil {
		t.Fatal(err)
	}
	leases = slices.Delete(leases, 4, 5)
	if got := issue().Data["service_account_id"]; got != freed {
		t.Errorf("the key after a revocation went to %v, want %s", got, freed)
	}

	for _, resp := range leases {
		if _, err := env.revoke(t, resp); err != nil {
			t.Fatal(err)
		}
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left after revoking every lease: %v", left)
	}
	if counts := env.serviceAccountCounts(t, "p"); counts[sas[0]]+counts[sas[1]]+counts[sas[2]] != 0 {
		t.Errorf("service_account_counts after revoking every lease: %v", counts)
	}
}

// TestPoolPassesOverKeysMadeOutsideTheEngine: a service account filled
// behind the engine's back is refused by Datadog; the request goes to the
// next one, and the full one is not tried again.
func TestPoolPassesOverKeysMadeOutsideTheEngine(t *testing.T) {
	env, sas := poolEnv(t, 3, 2)
	a, b := sas[0], sas[1]
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": a + "," + b, "api_key_mode": "none"})
	for range 3 {
		env.serviceAccountAppKey(t, a)
	}
	fault := &faultyClient{}
	env.injectFaults(fault)

	first := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	if owner := first.Data["service_account_id"]; owner != b {
		t.Fatalf("first key went to %v, want %s: %s is full", owner, b, a)
	}
	if len(fault.creates) != 2 || fault.creates[0].Owner != a || fault.creates[1].Owner != b {
		t.Errorf("creates asked for: %+v; want one refused for %s, then one for %s", fault.creates, a, b)
	}
	if names := []string{fault.creates[0].Name, fault.creates[1].Name}; names[0] != names[1] || names[0] != first.Data["name"] {
		t.Errorf("the second attempt was named %q, the first %q: want the request's one name", names[1], names[0])
	}
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Errorf("the refused attempt left records %v", ids)
	}
	for _, k := range env.issuedKeys() {
		if k.OwnerID == a {
			t.Errorf("the engine holds a key of the full service account: %+v", k)
		}
	}

	env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	if got := fault.creates[2:]; len(got) != 2 || got[0].Owner != b || got[1].Owner != b {
		t.Errorf("later creates: %+v; want both for %s, none tried for the full %s", got, b, a)
	}
	resp, err := env.do(t, logical.ReadOperation, "creds/p", nil)
	wantUserError(t, resp, err, "every service account", a+": 0", b+": 3")
}

// TestPoolLeasesRenewWhileTheirOwnerIsInTheRole: a lease renews whichever
// service account of the pool owns it, and stops once that one leaves the
// role; revocation and renewal reach the key where it lives.
func TestPoolLeasesRenewWhileTheirOwnerIsInTheRole(t *testing.T) {
	env, sas := poolEnv(t, 0, 3)
	a, b, c := sas[0], sas[1], sas[2]
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": a + "," + b, "ttl": "10m", "max_ttl": "1h"})
	ofA := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	ofB := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	if ofA.Data["service_account_id"] != a || ofB.Data["service_account_id"] != b {
		t.Fatalf("owners %v and %v, want %s then %s", ofA.Data["service_account_id"], ofB.Data["service_account_id"], a, b)
	}
	for _, resp := range []*logical.Response{ofA, ofB} {
		if renewed, err := env.renew(t, resp); err != nil || renewed.IsError() {
			t.Errorf("renewing a lease of %v: %v %v", resp.Data["service_account_id"], err, renewed)
		}
	}

	env.mustDo(t, logical.UpdateOperation, "roles/p", map[string]interface{}{"service_account_ids": a + "," + c})
	if renewed, err := env.renew(t, ofA); err != nil || renewed.IsError() {
		t.Errorf("renewing the lease of %s, still in the role: %v %v", a, err, renewed)
	}
	renewed, err := env.renew(t, ofB)
	wantUserError(t, renewed, err, "now issues credentials of service accounts "+a+", "+c, "this lease's belong to "+b)

	// One service account instead of the pool: its own leases still renew.
	env.mustDo(t, logical.UpdateOperation, "roles/p", map[string]interface{}{"service_account_id": a})
	if renewed, err := env.renew(t, ofA); err != nil || renewed.IsError() {
		t.Errorf("renewing the lease of %s, the role's one service account now: %v %v", a, err, renewed)
	}

	for _, resp := range []*logical.Response{ofA, ofB} {
		if _, err := env.revoke(t, resp); err != nil {
			t.Fatal(err)
		}
	}
	if left := env.issuedKeys(); len(left) != 0 {
		t.Errorf("keys left: %v", left)
	}
}

// TestPoolCountsFollowTheRecords: the counts are rebuilt from the records
// after a restart, and follow the rollback as they follow revocations.
func TestPoolCountsFollowTheRecords(t *testing.T) {
	env, sas := poolEnv(t, 0, 2)
	a, b := sas[0], sas[1]
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": a + "," + b, "api_key_mode": "dynamic"})
	ofA := env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	env.mustDo(t, logical.ReadOperation, "creds/p", nil)
	// A role of one of them counts for the same owner.
	env.writeRole(t, "single", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_id": b})
	env.mustDo(t, logical.ReadOperation, "creds/single", nil)

	env.restart(t)
	if counts := env.serviceAccountCounts(t, "p"); counts[a] != 1 || counts[b] != 2 {
		t.Errorf("counts after a restart: %v, want %s: 1, %s: 2", counts, a, b)
	}
	if _, err := env.revoke(t, ofA); err != nil {
		t.Fatal(err)
	}
	if counts := env.serviceAccountCounts(t, "p"); counts[a] != 0 || counts[b] != 2 {
		t.Errorf("counts after a revocation: %v", counts)
	}

	// A request whose keys the clean-up cannot delete stays counted until
	// the rollback deletes them.
	fault := &faultyClient{
		createFails: map[string]error{kindAPIKey: &apiError{Op: "API key creation", Status: http.StatusServiceUnavailable}},
		commitFirst: true,
		deleteFails: &apiError{Op: "deletion", Status: http.StatusServiceUnavailable},
	}
	env.injectFaults(fault)
	if _, err := env.do(t, logical.ReadOperation, "creds/p", nil); err == nil {
		t.Fatal("creds read succeeded despite the fault")
	}
	if counts := env.serviceAccountCounts(t, "p"); counts[a] != 1 {
		t.Errorf("counts with a failed request's key in Datadog: %v, want it counted for %s", counts, a)
	}
	fault.deleteFails = nil
	if err := env.rollbackNow(t); err != nil {
		t.Fatal(err)
	}
	if ids := env.walIDs(t); len(ids) != 0 {
		t.Fatalf("records left by the rollback: %v", ids)
	}
	if counts := env.serviceAccountCounts(t, "p"); counts[a] != 0 || counts[b] != 2 {
		t.Errorf("counts after the rollback: %v", counts)
	}
}

// TestTidyListsEveryServiceAccountOfAPool: a key no record accounts for,
// of a service account that only a pool names, is found and deleted.
func TestTidyListsEveryServiceAccountOfAPool(t *testing.T) {
	env, sas := poolEnv(t, 0, 3)
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": strings.Join(sas, ",")})
	name := "vault-p-token-1795700000-" + env.b.marker + "abcdefghijklmnop"
	status, key := env.rootCall(t, http.MethodPost, "/api/v2/service_accounts/"+sas[2]+"/application_keys",
		fmt.Sprintf(`{"data":{"type":"application_keys","attributes":{"name":%q}}}`, name))
	if status != http.StatusCreated {
		t.Fatalf("creating an orphan key: %d", status)
	}
	orphan := key["data"].(map[string]interface{})["id"].(string)

	result := env.tidyNow(t, map[string]interface{}{"safety_buffer": "1h"})
	if result["state"] != "finished" || result["deleted"] != 1 {
		t.Errorf("tidy status: %v; want the orphan of the pool's third service account deleted", result)
	}
	if env.keyExists(orphan) {
		t.Error("the orphan key is still in Datadog")
	}
}

// TestPoolSpreadsConcurrentRequests: each request counts its key for its
// service account as it picks it, so concurrent requests spread evenly.
func TestPoolSpreadsConcurrentRequests(t *testing.T) {
	env, sas := poolEnv(t, 0, 3)
	env.writeRole(t, "p", map[string]interface{}{"credential_type": "service_account_application_key", "scopes": "dashboards_read",
		"service_account_ids": strings.Join(sas, ","), "api_key_mode": "none"})
	const n = 30
	owners := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(t, logical.ReadOperation, "creds/p", nil)
			if err != nil || resp.IsError() {
				t.Errorf("creds: %v %v", err, resp)
				return
			}
			owners <- resp.Data["service_account_id"].(string)
		}()
	}
	wg.Wait()
	close(owners)
	got := map[string]int{}
	for o := range owners {
		got[o]++
	}
	for _, sa := range sas {
		if got[sa] != n/3 {
			t.Errorf("keys per service account %v, want %d each", got, n/3)
			break
		}
	}
	if owned := env.ownedKeys(); owned[sas[0]] != n/3 || owned[sas[1]] != n/3 || owned[sas[2]] != n/3 {
		t.Errorf("keys in Datadog per owner %v", owned)
	}
}
