package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// TestHAFailover runs the engine in a three-node raft cluster and SIGKILLs
// the active node (and its plugin) in the middle of a creds request, after
// the request created its application key and while Datadog holds its API
// key create. A standby takes over: it serves requests (standbys forward
// them), revokes and expires the leases issued before the crash, keeps the
// others, and its rollback deletes the keys of the request the dead node
// never finished, without anyone disabling the mount.
func TestHAFailover(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	cluster := startCluster(t, 3)
	first := cluster.activeNode(t, time.Minute)
	client := first.rootClient(t)
	mount := mountPath(t)
	if err := client.Sys().Mount(mount, &api.MountInput{Type: pluginName}); err != nil {
		t.Fatalf("enabling the engine at %s: %v", mount, err)
	}
	requireRunningVersion(t, client, mount)
	configureShortTimeout(t, client, mount, dd)
	roles := map[string]map[string]any{
		"app-short": {"scopes": "dashboards_read", "api_key_mode": "dynamic", "ttl": "30s"},
		"app-long":  {"scopes": "dashboards_read", "api_key_mode": "dynamic", "ttl": "1h"},
		"api-short": {"credential_type": "api_key", "api_key_mode": "dynamic", "ttl": "30s"},
		"api-long":  {"credential_type": "api_key", "api_key_mode": "dynamic", "ttl": "1h"},
	}
	issued := map[string][]*api.Secret{}
	for name, role := range roles {
		write(t, client, mount+"/roles/"+name, role)
		for range 2 {
			creds := readCreds(t, client, mount+"/creds/"+name)
			noteCreds(creds.Data)
			issued[name] = append(issued[name], creds)
		}
	}

	// A creds request whose API key create Datadog holds; the node dies
	// once the request's application key exists.
	if _, err := dd.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultLatency, Latency: 20 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	before := dd.liveVaultKeys()
	inFlight := make(chan error, 1)
	go func() {
		_, err := client.Logical().Read(mount + "/creds/app-long")
		inFlight <- err
	}()
	orphan := waitNewKey(t, dd, before, 30*time.Second)
	killedAt := time.Now()
	first.kill(t)
	if err := <-inFlight; err == nil {
		t.Fatal("the creds request succeeded although its node was killed in the middle of it")
	} else {
		noteError(err)
	}
	// The request's own clean-up (after its 2 s call timeout) must not have
	// run before the kill, or this test would prove nothing.
	if len(dd.keysNamed(orphan.Name)) == 0 {
		t.Fatalf("the killed request's application key %s was already deleted when its node died: the kill came too late", orphan.ID)
	}

	leader := cluster.activeNode(t, time.Minute)
	toLeader := time.Since(killedAt)
	t.Logf("%s is active %s after %s was killed", leader.name, toLeader.Round(time.Millisecond), first.name)
	leaderClient := leader.rootClient(t)

	// A standby answers as the active node would: it forwards requests.
	standby := cluster.standby(t, leader)
	standbyClient := standby.rootClient(t)
	waitLeaderKnown(t, standbyClient, leader, 30*time.Second)
	config, err := standbyClient.Logical().Read(mount + "/config")
	if err != nil || config == nil || config.Data["api_url"] != dd.URL {
		t.Fatalf("reading config through standby %s: %v %v", standby.name, config, err)
	}
	viaStandby := readCreds(t, standbyClient, mount+"/creds/app-long")
	noteCreds(viaStandby.Data)
	if got := dd.get(t, "/api/v2/validate_keys", str(t, viaStandby.Data, "api_key"), str(t, viaStandby.Data, "application_key")); got != http.StatusOK {
		t.Errorf("keys issued through standby %s: GET /api/v2/validate_keys answers HTTP %d, want 200", standby.name, got)
	}
	if err := standbyClient.Sys().Revoke(viaStandby.LeaseID); err != nil {
		t.Fatalf("revoking through standby %s: %v", standby.name, err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(viaStandby.Data)...)

	// The new leader revokes what it is asked to and expires the short
	// leases the old one issued.
	var ended []string
	for _, creds := range []*api.Secret{issued["app-long"][0], issued["api-long"][0]} {
		if err := leaderClient.Sys().Revoke(creds.LeaseID); err != nil {
			t.Fatalf("revoking %s through the new leader: %v", creds.LeaseID, err)
		}
		ended = append(ended, credentialIDs(creds.Data)...)
	}
	for _, creds := range slices.Concat(issued["app-short"], issued["api-short"]) {
		ended = append(ended, credentialIDs(creds.Data)...)
	}
	dd.waitKeysGone(t, 90*time.Second, ended...)

	// The rollback of the killed request's WAL entry, on the new leader's
	// 60 s timer once the request is surely over (46 s after it began).
	for deadline := killedAt.Add(150 * time.Second); len(dd.keysNamed(orphan.Name)) > 0; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the killed request's keys %+v are still in Datadog %s after the kill", dd.keysNamed(orphan.Name), time.Since(killedAt).Round(time.Second))
		}
	}
	t.Logf("the killed request's keys were rolled back %s after the kill", time.Since(killedAt).Round(time.Second))

	// Leases nobody ended keep working keys.
	for _, creds := range []*api.Secret{issued["app-long"][1], issued["api-long"][1]} {
		for _, id := range credentialIDs(creds.Data) {
			if _, ok := dd.key(id); !ok {
				t.Errorf("key %s of live lease %s was deleted", id, creds.LeaseID)
			}
		}
	}

	// The killed node comes back as a standby of the new leader.
	first.restart(t)
	waitLeaderKnown(t, first.rootClient(t), leader, 30*time.Second)

	if err := leaderClient.Sys().Unmount(mount); err != nil {
		t.Fatalf("disabling the engine: %v", err)
	}
	if live := dd.liveVaultKeys(); len(live) != 0 {
		t.Errorf("keys left in Datadog after the engine was disabled: %+v", live)
	}
}

// waitNewKey waits until Datadog holds a key of the engine that is not
// one of before, and returns it.
func waitNewKey(t *testing.T, dd *datadog, before []emulator.Key, timeout time.Duration) emulator.Key {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, k := range dd.liveVaultKeys() {
			if !slices.ContainsFunc(before, func(b emulator.Key) bool { return b.ID == k.ID }) {
				return k
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new key in Datadog after %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeaderKnown waits until the node behind client names leader as the
// active node: until then it cannot forward requests.
func waitLeaderKnown(t *testing.T, client *api.Client, leader *raftNode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := client.Sys().Leader()
		if err == nil && got.LeaderAddress == leader.addr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node at %s does not name %s (%s) its leader after %s: %+v %v", client.Address(), leader.name, leader.addr, timeout, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
