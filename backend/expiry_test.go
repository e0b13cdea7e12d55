package backend

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// pastExpiry moves a lease's recorded expiry into the past, as time
// passing without a renewal would.
func (env *testEnv) pastExpiry(t *testing.T, creds *logical.Response, ago time.Duration) {
	t.Helper()
	rec := env.record(t, creds)
	past := time.Now().Add(-ago)
	rec.Expires = &past
	if err := putRecord(context.Background(), env.storage, rec); err != nil {
		t.Fatal(err)
	}
}

// A lease Vault forgot (force-revoked while Datadog refused deletes) ends at
// its expiry, not at its max TTL: tidy deletes its keys once the expiry has
// passed, though max_ttl is a day away.
func TestForgottenLeaseEndsAtItsExpiry(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "dynamic", "ttl": "20s", "max_ttl": "24h"})
	before := time.Now()
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	rec := env.record(t, creds)
	if rec.Expires == nil {
		t.Fatal("the record does not carry the lease's expiry")
	}
	if low, high := before.Add(20*time.Second), time.Now().Add(20*time.Second+leaseRegistrationGrace); rec.Expires.Before(low) || rec.Expires.After(high) {
		t.Fatalf("expiry %s, want issue time + ttl (+ %s for Vault to register the lease): between %s and %s", rec.Expires, leaseRegistrationGrace, low, high)
	}
	if rec.LeaseEnds.Before(time.Now().Add(24 * time.Hour)) {
		t.Fatalf("lease_ends %s is before the max TTL", rec.LeaseEnds)
	}

	// The ttl passes; Vault no longer knows the lease (force-revoked).
	env.pastExpiry(t, creds, time.Second)
	status := env.tidyNow(t, map[string]interface{}{"safety_buffer": 0})
	if status["deleted"] != 2 {
		t.Fatalf("tidy after the forgotten lease's expiry: %v; want its 2 keys deleted", status)
	}
	if keys := env.issuedKeys(); len(keys) != 0 {
		t.Errorf("keys of a lease forgotten past its expiry are alive until max_ttl: %v", keys)
	}
}

// Renewal moves the recorded expiry before it is answered, so tidy leaves
// a renewed lease's keys alone; a renewal that comes after the recorded
// expiry (tidy may have deleted the keys) is refused; a renewal whose
// record cannot be written is refused.
func TestRenewalMovesTheExpiryTidyRespects(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "ttl": "20s", "max_ttl": "24h"})
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	first := *env.record(t, creds).Expires

	time.Sleep(10 * time.Millisecond)
	if resp, err := env.renew(t, creds); err != nil || resp.IsError() {
		t.Fatalf("renew: %v %v", err, resp)
	}
	renewed := env.record(t, creds).Expires
	if !renewed.After(first) {
		t.Fatalf("renewal left the expiry at %s (was %s)", renewed, first)
	}
	env.tidyNow(t, map[string]interface{}{"safety_buffer": 0})
	if !env.keysWork(t, creds.Data["api_key"].(string), creds.Data["application_key"].(string)) {
		t.Fatal("tidy deleted a renewed lease's keys")
	}

	// Tidy and a late renewal race: whichever comes first, no live lease
	// holds deleted keys.
	env.pastExpiry(t, creds, time.Second)
	done := make(chan error, 1)
	go func() {
		resp, err := env.renew(t, creds)
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		done <- err
	}()
	env.tidyNow(t, map[string]interface{}{"safety_buffer": 0})
	renewErr := <-done
	gone := !env.keyExists(creds.Data["application_key_id"].(string))
	if renewErr == nil && gone {
		t.Fatal("a renewal succeeded for a lease whose keys tidy deleted")
	}
	if renewErr == nil {
		t.Fatal("a renewal after the recorded expiry succeeded")
	}
	// Refused with a 400: by its recorded expiry when it came first, or
	// because tidy had deleted its keys.
	if gone {
		wantUserError(t, nil, renewErr, "cannot renew")
	} else {
		wantUserError(t, nil, renewErr, "ended at")
	}

	// A renewal whose record write fails is refused.
	fresh := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	env.storage = &failingPuts{Storage: env.storage, prefix: recordPrefix}
	if resp, err := env.renew(t, fresh); err == nil && !resp.IsError() {
		t.Error("a renewal whose new expiry could not be recorded was answered")
	}
}

// failingPuts fails writes under prefix.
type failingPuts struct {
	logical.Storage
	prefix string
}

func (f *failingPuts) Put(ctx context.Context, e *logical.StorageEntry) error {
	if len(e.Key) >= len(f.prefix) && e.Key[:len(f.prefix)] == f.prefix {
		return errStorageDown
	}
	return f.Storage.Put(ctx, e)
}

var errStorageDown = &apiError{Op: "storage put", Status: http.StatusServiceUnavailable}

// lease_ends and the expiry are counted from the time the keys exist: a
// create that waited (here 3 s, a rate limit's wait) must not leave the
// record's bounds short of the lease Vault starts after it.
func TestLeaseBoundsCountFromTheKeysCreation(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none", "ttl": "1h", "max_ttl": "1h"})
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "CreateCurrentUserApplicationKey", Action: emulator.FaultLatency, Latency: 3 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	creds := env.mustDo(t, logical.ReadOperation, "creds/r", nil)
	answered := time.Now()
	rec := env.record(t, creds)
	// Vault starts the lease once the answer is back: it ends at the latest
	// answered + max TTL, which the record must cover with its grace.
	if latest := answered.Add(creds.Secret.MaxTTL); rec.LeaseEnds.Before(latest.Add(leaseRegistrationGrace - 500*time.Millisecond)) {
		t.Errorf("lease_ends %s covers the lease Vault starts at %s (ending %s) by only %s; want %s",
			rec.LeaseEnds.Format(time.RFC3339Nano), answered.Format(time.RFC3339Nano), latest.Format(time.RFC3339Nano), rec.LeaseEnds.Sub(latest), leaseRegistrationGrace)
	}
	if latest := answered.Add(time.Hour); rec.Expires.Before(latest.Add(leaseRegistrationGrace - 500*time.Millisecond)) {
		t.Errorf("expiry %s short of the lease's ttl from its start (%s)", rec.Expires, latest)
	}
}
