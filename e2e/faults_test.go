package e2e

import (
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// liveVaultKeys lists what the engine created that still exists in Datadog.
func (d *datadog) liveVaultKeys() []emulator.Key {
	var live []emulator.Key
	for _, k := range d.Keys() {
		if strings.HasPrefix(k.Name, "vault-") {
			live = append(live, k)
		}
	}
	return live
}

// TestDatadogFailuresLeaveNoKeyBehind makes Datadog fail in the middle of a
// creds request, through a real Vault: the request fails, and whatever
// Datadog created anyway (its answer lost) is found by name and deleted.
func TestDatadogFailuresLeaveNoKeyBehind(t *testing.T) {
	for _, fault := range []emulator.Fault{
		{Operation: "CreateAPIKey", Action: emulator.FaultCommitThenReset, Times: 1},
		{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultCommitThenError, Status: 503, Times: 1},
		{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultRateLimit, Times: 1},
		{Operation: "CreateAPIKey", Action: emulator.FaultError, Status: 500, Times: 1},
	} {
		t.Run(fault.Operation+"/"+fault.Action, func(t *testing.T) {
			t.Parallel()
			dd, client, mount := startEngine(t)
			write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})

			if _, err := dd.AddFault(fault); err != nil {
				t.Fatal(err)
			}
			if secret, err := client.Logical().Read(mount + "/creds/r"); err == nil {
				t.Fatalf("creds read succeeded through the fault: %+v", secret)
			}
			if live := dd.liveVaultKeys(); len(live) != 0 {
				t.Errorf("keys left in Datadog after the failed request: %+v", live)
			}
			// Datadog is back: the next request works.
			readCreds(t, client, mount+"/creds/r")
		})
	}
}

// TestFailedRevocationIsRetried: a deletion Datadog refuses keeps the lease,
// and the next revocation deletes the keys.
func TestFailedRevocationIsRetried(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read"})
	creds := readCreds(t, client, mount+"/creds/r")

	if _, err := dd.AddFault(emulator.Fault{Operation: "DeleteCurrentUserApplicationKey", Action: emulator.FaultError, Status: 502, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if err := client.Sys().Revoke(creds.LeaseID); err == nil {
		t.Fatal("revocation reported success while Datadog failed")
	}
	if _, err := client.Sys().Lookup(creds.LeaseID); err != nil {
		t.Fatalf("the lease was dropped although its keys could not be deleted: %v", err)
	}
	if err := client.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatalf("second revocation: %v", err)
	}
	if live := dd.liveVaultKeys(); len(live) != 0 {
		t.Errorf("keys left after revocation: %+v", live)
	}
}
