package backend

import (
	"context"
	"crypto/rand"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The engine's record of each creds request, and the only functions that
// read, write, lock and list records. Its life:
//
//   - pending: written before anything is created in Datadog, naming every
//     object the request will create (kind, exact name, owner, home). It is
//     the request's write-ahead log entry: if the request fails, what it
//     created is deleted at once, or by the rollback (rollback.go) once
//     RequestEnds has passed; tidy is the net (path_tidy.go).
//   - issued: rewritten with Datadog's ids, LeaseEnds and Expires once every
//     object exists; it is then the lease's index entry. A renewal moves
//     Expires (moveExpiry) before it is answered. A record goes back to
//     pending only when that rewrite fails (abandon), and is then read again
//     by the rollback.
//   - killed: the watch deleted its credential before the lease ended
//     (leaked, idle): Killed says why, and renewals are refused.
//   - gone: revocation, rollback or tidy deleted its objects, then the
//     record (deleteRecord), which also lets go of a shared API key.
//
// A role's shared API key has a record of its own (Shared set), written
// under the same protocol; the leases holding it name it in SharedAPIKey
// (shared_api_key.go). Writes that race (a revocation's delete, the watch's
// mark, a renewal's expiry, tidy's decision) take the record's lock.
//
// Leases are local to a cluster, so the records are too (LocalStorage).

// recordPrefix holds the records. One record per request keeps the creds
// path at two storage writes, as a WAL entry put and deleted would.
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
	return b.dropRecord(ctx, s, id)
}

// dropRecord removes a record and nothing else: a creds request that
// abandons an attempt may try again (a pool's next service account) and
// still holds the shared API key it got; it lets go when it gives up.
func (b *datadogBackend) dropRecord(ctx context.Context, s logical.Storage, id string) error {
	b.forgetIssued(id)
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

// recordLocks order the writes of a record that race: a revocation's
// delete, the watch's mark, a renewal's expiry and tidy's decision.
type recordLocks [64]sync.Mutex

func (b *datadogBackend) recordLock(id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &b.recordLocks[h.Sum32()%uint32(len(b.recordLocks))]
}

// markKilled stores the verdict in the record, unless the record is gone.
func (b *datadogBackend) markKilled(ctx context.Context, s logical.Storage, id string, verdict *killed) error {
	if id == "" {
		return nil
	}
	lock := b.recordLock(id)
	lock.Lock()
	defer lock.Unlock()
	rec, err := getRecord(ctx, s, id)
	if err != nil || rec == nil {
		return err
	}
	marked := *verdict
	rec.Killed = &marked
	return putRecord(ctx, s, rec)
}

// moveExpiry records a renewed lease's new expiry before the renewal is
// answered. Under the record's lock, so that tidy, which deletes the keys
// of a record whose expiry has passed under the same lock, never deletes a
// lease's keys while a renewal makes it live again: a renewal that finds
// the expiry already passed is refused.
func (b *datadogBackend) moveExpiry(ctx context.Context, s logical.Storage, id string, ttl time.Duration) error {
	lock := b.recordLock(id)
	lock.Lock()
	defer lock.Unlock()
	rec, err := getRecord(ctx, s, id)
	if err != nil || rec == nil {
		return err
	}
	now := time.Now()
	if rec.Expires != nil && now.After(*rec.Expires) {
		return renewRefused("the engine's record says this lease ended at %s; its keys may be deleted; request new credentials",
			rec.Expires.Format(time.RFC3339))
	}
	rec.Expires = b.expiry(now, ttl, rec.LeaseEnds)
	if err := putRecord(ctx, s, rec); err != nil {
		return fmt.Errorf("cannot renew: error recording the lease's new expiry: %w", err)
	}
	return nil
}

// knownIssued notes that a record belongs to a lease, so that the rollback
// reads it once, not every minute; forgetIssued undoes it, for a record
// deleted or written back to pending (abandon).
func (b *datadogBackend) knownIssued(id string)        { b.issuedRecords.Store(id, struct{}{}) }
func (b *datadogBackend) forgetIssued(id string)       { b.issuedRecords.Delete(id) }
func (b *datadogBackend) isKnownIssued(id string) bool { _, ok := b.issuedRecords.Load(id); return ok }
