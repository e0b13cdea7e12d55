package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// rootKeyID reads the root credential's id from config.
func rootKeyID(t *testing.T, client *api.Client, mount string) string {
	t.Helper()
	cfg, err := client.Logical().Read(mount + "/config")
	if err != nil || cfg == nil {
		t.Fatalf("reading %s/config: %v", mount, err)
	}
	return str(t, cfg.Data, "root_key_id")
}

// rootKeys lists the root application keys rotations made in dd.
func (d *datadog) rootKeys() []emulator.Key {
	var out []emulator.Key
	for _, k := range d.Keys() {
		if strings.HasPrefix(k.Name, "vault-root-") {
			out = append(out, k)
		}
	}
	return out
}

// TestRotateRoot rotates the engine's root application key with the CLI:
// the old key is gone from Datadog, the new one has the documented scopes
// and works, and a lease issued before the rotation still revokes.
func TestRotateRoot(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none"})
	before := readCreds(t, client, mount+"/creds/r")
	noteCreds(before.Data)
	oldID := rootKeyID(t, client, mount)
	if _, ok := dd.key(oldID); !ok {
		t.Fatalf("config's root_key_id %q is not the configured key", oldID)
	}

	var rotated struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(cli(t, "write", "-format=json", "-f", mount+"/config/rotate-root")), &rotated); err != nil {
		t.Fatal(err)
	}
	newID := str(t, rotated.Data, "key_id")
	if _, ok := dd.key(oldID); ok {
		t.Errorf("the previous root key %s is still in Datadog", oldID)
	}
	if dd.get(t, "/api/v2/current_user", dd.APIKey(), dd.AppKey()) != http.StatusForbidden {
		t.Error("the previous root key still authenticates")
	}
	k, ok := dd.key(newID)
	want := []string{"api_keys_delete", "api_keys_read", "api_keys_write", "service_account_write", "user_access_read", "user_app_keys"}
	if !ok || !slices.Equal(k.Scopes, want) || !strings.HasPrefix(k.Name, "vault-root-") || len(str(t, rotated.Data, "key_last4")) != 4 {
		t.Errorf("new root key %s: %+v (in Datadog: %v), answer %v", newID, k, ok, rotated.Data)
	}
	if got := rootKeyID(t, client, mount); got != newID {
		t.Errorf("config's root_key_id is %s, want %s", got, newID)
	}

	if err := client.Sys().Revoke(before.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued before the rotation: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, str(t, before.Data, "application_key_id"))
	after := readCreds(t, client, mount+"/creds/r")
	noteCreds(after.Data)
}

// TestScheduledRotation sets the shortest rotation_period and waits for
// the engine to rotate by itself.
func TestScheduledRotation(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/config", map[string]any{"rotation_period": "1m"})
	first := rootKeyID(t, client, mount)
	start := time.Now()
	deadline := start.Add(3 * time.Minute) // the period, then Vault's one-minute timer, with margin
	for rootKeyID(t, client, mount) == first {
		if time.Now().After(deadline) {
			t.Fatalf("no rotation %s after a rotation_period of 1m was set", time.Since(start).Round(time.Second))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("rotated by the engine %s after rotation_period=1m was set", time.Since(start).Round(time.Second))
	if _, ok := dd.key(first); ok {
		t.Errorf("the previous root key %s is still in Datadog", first)
	}
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	noteCreds(readCreds(t, client, mount+"/creds/r").Data)
}

// TestRotateRootCrashRecovers SIGKILLs the plugin in the middle of two
// rotations, one while Datadog holds the new key's create, one while it
// holds the old key's delete. Once the rotations are surely over, the
// rollback leaves each mount with one working root key and no other: the
// old one where config never took the new one, the new one where it did.
// Vault sends a request that died with its plugin once more to the
// restarted plugin; when that retry completes the rotation, the killed
// attempt's key must still be rolled back.
func TestRotateRootCrashRecovers(t *testing.T) {
	t.Parallel()
	cluster := startCluster(t, 1)
	client := cluster.activeNode(t, time.Minute).rootClient(t)
	type rotation struct {
		dd    *datadog
		mount string
		old   string
		fault emulator.Fault
		err   chan error // the rotation's answer
	}
	steps := map[string]*rotation{
		"create": {fault: emulator.Fault{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultLatency, Latency: 10 * time.Second, Times: 1}},
		"delete": {fault: emulator.Fault{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultLatency, Latency: 10 * time.Second, Times: 1}},
	}
	for step, r := range steps {
		r.dd, r.mount = startDatadog(t), mountPath(t)+"-"+step
		if err := client.Sys().Mount(r.mount, &api.MountInput{Type: pluginName}); err != nil {
			t.Fatal(err)
		}
		configureShortTimeout(t, client, r.mount, r.dd)
		r.old = rootKeyID(t, client, r.mount)
		f, err := r.dd.AddFault(r.fault)
		if err != nil {
			t.Fatal(err)
		}
		r.fault, r.err = f, make(chan error, 1)
		go func() {
			_, err := client.Logical().Write(r.mount+"/config/rotate-root", nil)
			r.err <- err
		}()
	}
	for step, r := range steps {
		// A fault of one call is listed until that call has come.
		waiting := func(f emulator.Fault) bool { return f.ID == r.fault.ID && f.Hits == 0 }
		for deadline := time.Now().Add(30 * time.Second); slices.ContainsFunc(r.dd.Faults(), waiting); {
			if time.Now().After(deadline) {
				t.Fatalf("the %s rotation never reached its held call", step)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cluster.nodes[0].killPlugin(t, 10*time.Second)
	retried := map[string]bool{}
	for step, r := range steps {
		retried[step] = <-r.err == nil
		if retried[step] {
			t.Logf("%s: Vault's retry of the killed rotation completed it", step)
		}
	}

	deadline := time.Now().Add(3 * time.Minute)
	for step, r := range steps {
		for {
			// The first requests after the kill may fail, until Vault
			// starts the plugin again.
			var root string
			if cfg, err := client.Logical().Read(r.mount + "/config"); err == nil && cfg != nil {
				root, _ = cfg.Data["root_key_id"].(string)
			}
			keys := r.dd.rootKeys()
			_, oldLive := r.dd.key(r.old)
			var done bool
			if step == "create" && !retried[step] {
				// config never took the new key: it goes, the old stays
				done = root == r.old && oldLive && len(keys) == 0
			} else {
				// config took a new key: the old one goes, and so does the
				// killed attempt's key when a retry made another
				done = root != r.old && !oldLive && len(keys) == 1 && keys[0].ID == root
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after the crash, config's root is %s (was %s, still live: %v), root keys made: %v", step, root, r.old, oldLive, keys)
			}
			time.Sleep(time.Second)
		}
		write(t, client, r.mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none"})
		creds := readCreds(t, client, r.mount+"/creds/r")
		noteCreds(creds.Data)
		if err := client.Sys().Revoke(creds.LeaseID); err != nil {
			t.Errorf("%s: revoking with the root key after recovery: %v", step, err)
		}
		if err := client.Sys().Unmount(r.mount); err != nil {
			t.Errorf("disabling %s: %v", r.mount, err)
		}
		if keys := r.dd.rootKeys(); len(keys) != 0 {
			t.Errorf("%s: root keys the engine made are left after its mount was disabled: %v", step, keys)
		}
	}
}

// TestRotateTokenRoot rotates an access_token root with the CLI: the new
// root token ends when the old one did (Datadog lets no token make one that
// outlives it), config says so, the old token is dead, a lease issued
// before still revokes, and the engine goes on issuing.
func TestRotateTokenRoot(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	end := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	sa := configureTokenRoot(t, client, mount, dd, end, "dashboards_read")
	oldID := rootKeyID(t, client, mount)
	old, ok := dd.key(oldID)
	if !ok || old.ExpiresAt == nil || !old.ExpiresAt.Equal(end) {
		t.Fatalf("config's root_key_id %q is not the configured token expiring at %s: %+v", oldID, end, old)
	}
	write(t, client, mount+"/roles/r", map[string]any{"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read"})
	before := readCreds(t, client, mount+"/creds/r")

	var rotated struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(cli(t, "write", "-format=json", "-f", mount+"/config/rotate-root")), &rotated); err != nil {
		t.Fatal(err)
	}
	newID := str(t, rotated.Data, "key_id")
	made, ok := dd.key(newID)
	if !ok || made.ExpiresAt == nil || !made.ExpiresAt.Equal(end) || str(t, rotated.Data, "expires_at") != end.Format(time.RFC3339) {
		t.Errorf("new root token %s expires at %v (answer %v), want the old one's end %s", newID, made.ExpiresAt, rotated.Data["expires_at"], end)
	}
	if !slices.Equal(made.Scopes, old.Scopes) {
		t.Errorf("new root token's scopes %v, want the old one's %v", made.Scopes, old.Scopes)
	}
	if _, ok := dd.key(oldID); ok {
		t.Errorf("the previous root token %s is still live in Datadog", oldID)
	}
	cfg, err := client.Logical().Read(mount + "/config")
	if err != nil || cfg == nil || cfg.Data["root_key_id"] != newID || cfg.Data["root_expires_at"] != end.Format(time.RFC3339) {
		t.Errorf("config after the rotation: %v (%v), want root %s ending %s", cfg, err, newID, end)
	}

	if err := client.Sys().Revoke(before.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued before the rotation: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, str(t, before.Data, "access_token_id"))
	after := readCreds(t, client, mount+"/creds/r")
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", bearerAuth(after.Data)); got != http.StatusOK {
		t.Errorf("a token issued after the rotation: HTTP %d, want 200", got)
	}
}
