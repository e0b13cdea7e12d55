package backend

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// recordPrefix holds the engine's record of each creds request. A record
// is written before anything is created in Datadog: until the request
// succeeds it is the request's write-ahead log entry, which the rollback
// replays (deleting what the request may have created) once the request is
// surely over. When the lease is issued the same record, now
// with Datadog's ids, becomes the index entry of the lease, removed when
// the lease is revoked. One record per request keeps the creds path at two
// storage writes, as a WAL entry put and deleted would.
//
// Leases are local to a cluster, so the records are too (LocalStorage).
const recordPrefix = "credentials/"

// requestEndMargin is added to a creds request's own bounds before its WAL
// entry may be rolled back, so that a rollback never races a request that
// is still running.
const requestEndMargin = 30 * time.Second

// credentialRecord is the engine's record of one creds request.
type credentialRecord struct {
	ID        string          `json:"id"` // also the unique part of the objects' names
	Role      string          `json:"role"`
	CreatedAt time.Time       `json:"created_at"`
	Issued    bool            `json:"issued"` // false: the WAL entry of a request in flight, or failed
	Objects   []datadogObject `json:"objects"`
	// RequestEnds is when the request that wrote the record is over,
	// whatever happened to it: its WAL entry may be rolled back after.
	RequestEnds time.Time `json:"request_ends"`
	// LeaseEnds is the latest its lease can end, renewals included: after
	// it, tidy may delete what the lease still holds.
	LeaseEnds time.Time `json:"lease_ends"`
	// Expires is when the lease ends unless renewed: set at issue from the
	// TTL the engine returns, moved by every renewal before it is answered.
	// A lease Vault forgot (force-revoked, never stored) ends here, and
	// tidy deletes its keys once it is past, not only at LeaseEnds.
	Expires *time.Time `json:"expires,omitempty"`
	// terms fix LeaseEnds and Expires once the keys exist (creds path).
	terms *leaseTerms
	// Killed is set when the engine deleted the credential before its
	// lease ended (leaked, idle): its renewals are refused.
	Killed *killed `json:"killed,omitempty"`
	// Who asked for it: the Vault display name and entity of the request.
	DisplayName string `json:"display_name,omitempty"`
	EntityID    string `json:"entity_id,omitempty"`
	// SharedAPIKey is the record of the role's shared API key the lease
	// holds (api_key_mode shared); Shared marks that record itself
	// (shared_api_key.go).
	SharedAPIKey string        `json:"shared_api_key,omitempty"`
	Shared       *sharedWindow `json:"shared,omitempty"`
}

// ended reports whether the record's lease ended longer than buffer ago:
// past its latest end, or past its expiry without a renewal.
func (rec *credentialRecord) ended(buffer time.Duration) bool {
	return time.Since(rec.LeaseEnds) > buffer || rec.Expires != nil && time.Since(*rec.Expires) > buffer
}

// newRecordID returns 16 random characters of lowercase base32 (80 bits):
// unique in every Datadog organisation, and safe in a key name.
func newRecordID() string {
	return strings.ToLower(rand.Text()[:16])
}

func putRecord(ctx context.Context, s logical.Storage, rec *credentialRecord) error {
	entry, err := logical.StorageEntryJSON(recordPrefix+rec.ID, rec)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

func getRecord(ctx context.Context, s logical.Storage, id string) (*credentialRecord, error) {
	entry, err := s.Get(ctx, recordPrefix+id)
	if err != nil || entry == nil {
		return nil, err
	}
	rec := new(credentialRecord)
	if err := entry.DecodeJSON(rec); err != nil {
		return nil, fmt.Errorf("error reading the engine's record %s: %w", id, err)
	}
	return rec, nil
}

// deleteRecord removes a record whose own objects are gone. A lease that
// held a shared API key lets go of it first (deleting it when it was the
// last holder); a shared key's record takes its stored secret with it.
func (b *datadogBackend) deleteRecord(ctx context.Context, s logical.Storage, id string) error {
	if err := b.releaseSharedKey(ctx, s, id); err != nil {
		return err
	}
	b.issuedRecords.Delete(id)
	lock := b.recordLock(id)
	lock.Lock()
	defer lock.Unlock()
	if err := s.Delete(ctx, recordPrefix+id); err != nil {
		return err
	}
	b.ownerKeys.forget(id)
	return b.forgetSharedKey(ctx, s, id)
}

// records reads every record, for the rare operations that need them all.
func records(ctx context.Context, s logical.Storage) ([]*credentialRecord, error) {
	ids, err := s.List(ctx, recordPrefix)
	if err != nil {
		return nil, err
	}
	var out []*credentialRecord
	for _, id := range ids {
		rec, err := getRecord(ctx, s, id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// periodicFunc runs on Vault's rollback timer (every minute) and once more
// when the mount is disabled: it rolls back WAL entries, rotates the root
// credential and starts a tidy and a watch run when they are due.
func (b *datadogBackend) periodicFunc(ctx context.Context, req *logical.Request) error {
	// Where Vault's AWS engine skips its rollback: on performance standbys
	// (the active node rolls back) and performance secondaries (the primary
	// does: creds requests are forwarded there), as well as DR secondaries.
	if !b.WriteSafeReplicationState() {
		return nil
	}
	_, immediate := req.Data["immediate"]
	immediate = immediate || b.System().Tainted()
	return errors.Join(b.rollback(ctx, req, immediate), b.sweepSharedKeys(ctx, req.Storage, immediate), b.rollbackRotations(ctx, req, immediate),
		b.periodicRotation(ctx, req.Storage), b.periodicTidy(ctx, req.Storage), b.periodicWatch(ctx, req.Storage))
}

// rollback replays the WAL entries of creds requests that did not issue a
// lease: it deletes whatever they may have created, by id where Datadog
// returned one and by exact name otherwise, then removes the entry. An
// entry whose objects cannot all be deleted yet stays for the next run.
//
// Entries of requests that may still run are left alone, unless the mount
// is being disabled (its storage goes with it) or the request asks for an
// immediate rollback, as Vault's framework allows for its own WAL.
func (b *datadogBackend) rollback(ctx context.Context, req *logical.Request, immediate bool) error {
	ids, err := req.Storage.List(ctx, recordPrefix)
	if err != nil {
		return err
	}
	now := time.Now()

	var sess *session
	var errs []error
	for _, id := range ids {
		if _, issued := b.issuedRecords.Load(id); issued {
			continue
		}
		rec, err := getRecord(ctx, req.Storage, id)
		if err != nil || rec == nil {
			errs = append(errs, err)
			continue
		}
		if rec.Issued {
			b.issuedRecords.Store(id, struct{}{}) // records never go back to pending
			continue
		}
		if !immediate && !now.After(rec.RequestEnds) {
			continue
		}
		if sess == nil {
			if sess, err = b.session(ctx, req.Storage); err != nil || sess == nil {
				return errors.Join(append(errs, fmt.Errorf("cannot roll back the Datadog objects of failed creds requests: %w", cmp.Or(err, errNotConfigured)))...)
			}
		}
		if err := b.deleteObjects(ctx, sess, rec.Objects, rec.CreatedAt.Add(-maxClockSkew)); err != nil {
			errs = append(errs, fmt.Errorf("rolling back creds request %s of role %q, created %s: %w", rec.ID, rec.Role, rec.CreatedAt.Format(time.RFC3339), err))
			continue
		}
		if err := b.deleteRecord(ctx, req.Storage, id); err != nil {
			errs = append(errs, err)
			continue
		}
		b.Logger().Info("rolled back a failed creds request: its Datadog objects are deleted", "record", id, "role", rec.Role, "objects", describeObjects(rec.Objects))
	}
	return errors.Join(errs...)
}
