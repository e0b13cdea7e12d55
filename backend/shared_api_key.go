package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
	"github.com/hashicorp/vault/sdk/logical"
)

// Datadog caps the API keys of an organisation (50 by default,
// meta.max_allowed), so a role with api_key_mode shared does not make one
// per lease. It keeps one API key per rotation window and hands it to
// every lease issued in that window; the key is deleted as soon as no
// lease holds it any more, whether or not its window has closed. A closed
// window only stops it being handed to new leases.
//
// The key is a credential record of its own (Shared set, its one object
// the API key), written under the same write-ahead protocol as a lease's
// and found by the rollback and tidy like any other. Each lease that holds
// it names it in its own record (SharedAPIKey); which leases hold which key
// is kept in memory (sharedKeyIndex), built once from the records, and
// every change of it happens under one lock, so that two revocations
// racing never both skip the key and a revocation never deletes it under a
// lease being issued. Datadog returns an API key's secret only on create:
// it is kept seal-wrapped at sharedSecretPrefix, for the leases to come.
const (
	sharedSecretPrefix    = "shared-api-keys/"
	defaultAPIKeyRotation = 24 * time.Hour
	minAPIKeyRotation     = 10 * time.Second
	sharedKeyNameTemplate = `vault-{{ .RoleName | truncate 40 }}-shared-{{ unix_time }}`
	defaultAPIKeyReserve  = 5
)

// sharedWindow marks a record as a role's shared API key.
type sharedWindow struct {
	// WindowEnds is when the key stops being handed to new leases.
	WindowEnds time.Time `json:"window_ends"`
}

// sharedKey is a shared API key as the index holds it.
type sharedKey struct {
	rec     *credentialRecord
	secret  string
	holders map[string]bool // ids of the records of the leases (or requests) holding it
	// retired: handed to no new lease; set when its last holder let go, or
	// when it was killed or dropped.
	retired bool
}

func (k *sharedKey) object() datadogObject { return k.rec.Objects[0] }

// sharedKeyIndex is which lease holds which shared API key. Only the active
// node issues and revokes, so only its index is used; it is built from the
// records on first use after a start.
type sharedKeyIndex struct {
	buildLock sync.Mutex

	mu       sync.Mutex
	built    bool
	keys     map[string]*sharedKey    // record id of the key → key
	holderOf map[string]string        // record id of a lease → record id of its key
	current  map[string]*sharedKey    // role → key handed to its new leases
	creating map[string]chan struct{} // role → closed when the key being made is ready
}

// ensure builds the index from storage unless it is built. Every change of
// a shared key or of its holders waits for it, so nothing changes what the
// build reads.
func (b *datadogBackend) ensureSharedKeys(ctx context.Context, s logical.Storage) error {
	ix := &b.sharedKeys
	ix.mu.Lock()
	built := ix.built
	ix.mu.Unlock()
	if built {
		return nil
	}
	ix.buildLock.Lock()
	defer ix.buildLock.Unlock()
	ix.mu.Lock()
	built = ix.built
	ix.mu.Unlock()
	if built {
		return nil
	}

	recs, err := records(ctx, s)
	if err != nil {
		return fmt.Errorf("error reading the records of shared API keys: %w", err)
	}
	keys, holderOf, current := map[string]*sharedKey{}, map[string]string{}, map[string]*sharedKey{}
	for _, rec := range recs {
		// A key whose create may not have finished is the rollback's.
		if rec.Shared == nil || !rec.Issued || len(rec.Objects) != 1 {
			continue
		}
		entry, err := s.Get(ctx, sharedSecretPrefix+rec.ID)
		if err != nil {
			return fmt.Errorf("error reading shared API key %s: %w", rec.ID, err)
		}
		k := &sharedKey{rec: rec, holders: map[string]bool{}, retired: rec.Killed != nil || entry == nil}
		if entry != nil {
			k.secret = string(entry.Value)
		}
		keys[rec.ID] = k
		if cur := current[rec.Role]; !k.retired && (cur == nil || rec.CreatedAt.After(cur.rec.CreatedAt)) {
			current[rec.Role] = k
		}
	}
	for _, rec := range recs {
		k := keys[rec.SharedAPIKey]
		if k == nil || rec.Killed != nil && rec.Killed.Deleted {
			continue // a killed lease let go of its key
		}
		k.holders[rec.ID] = true
		holderOf[rec.ID] = rec.SharedAPIKey
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.keys, ix.holderOf, ix.current, ix.creating = keys, holderOf, current, map[string]chan struct{}{}
	ix.built = true
	return nil
}

// acquireSharedKey returns the role's API key of the current window,
// counted as held by holder (the record id of the creds request), making
// one when the role has none that may be handed out. Concurrent requests
// of a role wait for one create rather than each making a key.
func (b *datadogBackend) acquireSharedKey(ctx context.Context, s logical.Storage, sess *session, roleName string, role *datadogRole, holder string) (*sharedKey, *logical.Response, error) {
	if err := b.ensureSharedKeys(ctx, s); err != nil {
		return nil, nil, err
	}
	ix := &b.sharedKeys
	for {
		ix.mu.Lock()
		if k := ix.current[roleName]; k != nil && k.usableFor(sess.cfg, time.Now()) {
			k.holders[holder] = true
			ix.holderOf[holder] = k.rec.ID
			ix.mu.Unlock()
			return k, nil, nil
		}
		if wait := ix.creating[roleName]; wait != nil {
			ix.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("waiting for role %q's shared API key: %w", roleName, ctx.Err())
			}
		}
		done := make(chan struct{})
		ix.creating[roleName] = done
		ix.mu.Unlock()

		k, resp, err := b.createSharedKey(ctx, s, sess, roleName, role)

		ix.mu.Lock()
		delete(ix.creating, roleName)
		close(done)
		if k != nil {
			ix.keys[k.rec.ID] = k
			ix.current[roleName] = k
			k.holders[holder] = true
			ix.holderOf[holder] = k.rec.ID
		}
		ix.mu.Unlock()
		return k, resp, err
	}
}

// usableFor says whether the key may go to a new lease now: its window is
// open and it lives where config now makes credentials.
func (k *sharedKey) usableFor(cfg *datadogConfig, now time.Time) bool {
	return !k.retired && now.Before(k.rec.Shared.WindowEnds) && k.object().Home == cfg.home() && k.object().Owner == cfg.OwnerID
}

// createSharedKey makes a role's API key for a new window, under the same
// write-ahead protocol as a lease's keys.
func (b *datadogBackend) createSharedKey(ctx context.Context, s logical.Storage, sess *session, roleName string, role *datadogRole) (*sharedKey, *logical.Response, error) {
	cfg := sess.cfg
	now := time.Now()
	rec := &credentialRecord{ID: newRecordID(), Role: roleName, CreatedAt: now.UTC(),
		RequestEnds: now.Add(cfg.credsBudget() + cfg.cleanupBudget() + requestEndMargin).UTC(),
		Shared:      &sharedWindow{WindowEnds: now.Add(role.apiKeyRotation()).UTC()}}
	name, err := credentialName(sharedKeyNameTemplate, nameData{RoleName: roleName}, b.marker+rec.ID)
	if err != nil {
		return nil, nil, err
	}
	rec.Objects = []datadogObject{{Kind: kindAPIKey, Name: name, Owner: cfg.OwnerID, Home: cfg.home()}}
	// Every lease of the window ends by the window's end plus its max TTL;
	// the key lives no longer (tidy's bound).
	rec.LeaseEnds = b.maxLeaseEnd(rec.Shared.WindowEnds, role.MaxTTL).Add(leaseRegistrationGrace).UTC()

	secrets, resp, err := b.createObjects(ctx, s, sess, rec, nil)
	if resp != nil || err != nil {
		return nil, resp, err
	}
	entry := &logical.StorageEntry{Key: sharedSecretPrefix + rec.ID, Value: []byte(secrets[0]), SealWrap: true}
	if err := s.Put(ctx, entry); err != nil {
		b.abandon(ctx, s, sess, rec, nil)
		return nil, nil, fmt.Errorf("error storing the new shared API key (it is being deleted): %w", err)
	}
	b.Logger().Info("made a shared API key for a role's new window", "record", rec.ID, "role", roleName, "api_key", describeObjects(rec.Objects),
		"window_ends", rec.Shared.WindowEnds.Format(time.RFC3339))
	return &sharedKey{rec: rec, secret: secrets[0], holders: map[string]bool{}}, nil, nil
}

// releaseSharedKey stops counting holder as holding its shared API key.
// When it was the key's last holder, the key is deleted in Datadog, with
// its record; should that fail, holder still holds it, so that the
// caller's retry (a revocation's, tidy's) or the periodic sweep deletes it.
func (b *datadogBackend) releaseSharedKey(ctx context.Context, s logical.Storage, holder string) error {
	if err := b.ensureSharedKeys(ctx, s); err != nil {
		return err
	}
	ix := &b.sharedKeys
	ix.mu.Lock()
	id, holds := ix.holderOf[holder]
	k := ix.keys[id]
	switch {
	case !holds:
		ix.mu.Unlock()
		return nil
	case k == nil:
		delete(ix.holderOf, holder)
		ix.mu.Unlock()
		return nil
	case len(k.holders) > 1 || !k.holders[holder]:
		delete(k.holders, holder)
		delete(ix.holderOf, holder)
		ix.mu.Unlock()
		return nil
	}
	ix.retireLocked(k)
	ix.mu.Unlock()

	if err := b.deleteSharedKey(ctx, s, k); err != nil {
		return err
	}
	ix.mu.Lock()
	delete(k.holders, holder)
	delete(ix.holderOf, holder)
	ix.mu.Unlock()
	return nil
}

// retireLocked stops k being handed to new leases; ix.mu is held.
func (ix *sharedKeyIndex) retireLocked(k *sharedKey) {
	k.retired = true
	if ix.current[k.rec.Role] == k {
		delete(ix.current, k.rec.Role)
	}
}

// retireSharedKey stops a killed key being handed to new leases.
func (b *datadogBackend) retireSharedKey(id string) {
	ix := &b.sharedKeys
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if k := ix.keys[id]; k != nil {
		ix.retireLocked(k)
	}
}

// deleteSharedKey deletes a retired key in Datadog, then its record.
func (b *datadogBackend) deleteSharedKey(ctx context.Context, s logical.Storage, k *sharedKey) error {
	sess, err := b.session(ctx, s)
	if err != nil {
		return err
	}
	if sess == nil {
		return fmt.Errorf("cannot delete the shared Datadog %s: %w", describeObjects(k.rec.Objects), errNotConfigured)
	}
	if err := b.deleteObjects(ctx, sess, k.rec.Objects, time.Time{}); err != nil {
		return fmt.Errorf("no lease holds the shared API key any more, but it could not be deleted (the engine retries): %w", err)
	}
	if err := b.deleteRecord(ctx, s, k.rec.ID); err != nil {
		return fmt.Errorf("the shared Datadog %s is deleted, but not the engine's record of it: %w", describeObjects(k.rec.Objects), err)
	}
	b.Logger().Info("deleted a shared API key: no lease holds it any more", "record", k.rec.ID, "role", k.rec.Role, "api_key", describeObjects(k.rec.Objects))
	return nil
}

// forgetSharedKey drops a deleted key's record from the index and its
// secret from storage; a no-op for any other record.
func (b *datadogBackend) forgetSharedKey(ctx context.Context, s logical.Storage, id string) error {
	ix := &b.sharedKeys
	ix.mu.Lock()
	k, known := ix.keys[id]
	if known {
		ix.retireLocked(k)
		delete(ix.keys, id)
	}
	ix.mu.Unlock()
	if !known {
		return nil
	}
	return s.Delete(ctx, sharedSecretPrefix+id)
}

// sweepSharedKeys deletes the shared keys no lease holds: those whose
// holder's request died between making the key and writing its own record,
// and those whose last holder's deletion failed for good. A key made by a
// request that may still run is left to it, unless immediate.
func (b *datadogBackend) sweepSharedKeys(ctx context.Context, s logical.Storage, immediate bool) error {
	if err := b.ensureSharedKeys(ctx, s); err != nil {
		return err
	}
	ix := &b.sharedKeys
	now := time.Now()
	var idle []*sharedKey
	ix.mu.Lock()
	for _, k := range ix.keys {
		if len(k.holders) == 0 && (immediate || now.After(k.rec.RequestEnds)) && ix.creating[k.rec.Role] == nil {
			ix.retireLocked(k)
			idle = append(idle, k)
		}
	}
	ix.mu.Unlock()
	var errs []error
	for _, k := range idle {
		if err := b.deleteSharedKey(ctx, s, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sharedKeyOf returns the shared key a lease holds, or nil when it is gone.
func (b *datadogBackend) sharedKeyOf(ctx context.Context, s logical.Storage, id string) (*sharedKey, error) {
	if err := b.ensureSharedKeys(ctx, s); err != nil {
		return nil, err
	}
	b.sharedKeys.mu.Lock()
	defer b.sharedKeys.mu.Unlock()
	return b.sharedKeys.keys[id], nil
}

// apiKeyCountTTL is how long the organisation's API key count is trusted
// while it leaves room well above the reserve.
const apiKeyCountTTL = time.Minute

// apiKeyCount is what Datadog last said of the organisation's API keys,
// plus the keys this engine made since: asking before every request would
// put a Datadog round trip in front of every creds read.
type apiKeyCount struct {
	mu           sync.Mutex
	total, limit int
	made         int
	at           time.Time
}

// roomy counts one more key and reports true when the last count, with
// the keys made since, leaves room well above reserve: a tenth of the cap,
// and at least 2 keys, beyond it.
func (c *apiKeyCount) roomy(reserve int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || now.Sub(c.at) > apiKeyCountTTL || c.limit <= 0 {
		return false
	}
	if free := c.limit - c.total - c.made - reserve; free <= max(c.limit/10, 2) {
		return false
	}
	c.made++
	return true
}

func (c *apiKeyCount) observe(total, limit int, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total, c.limit, c.made, c.at = total, limit, 1, at
}

// checkAPIKeyRoom refuses to make an API key that would leave the
// organisation with fewer free API keys than config's api_key_reserve:
// Datadog's cap is the organisation's, and people need keys too. The cap
// and the count are what Datadog's listing reports (meta.max_allowed,
// meta.page.total_filtered_count), never the wording of a refusal. Datadog
// is asked once a minute, and before every request once the room is
// nearly spent; a count at most a minute old can miss keys other tools
// made meanwhile, which Datadog's own cap then refuses.
func (b *datadogBackend) checkAPIKeyRoom(ctx context.Context, sess *session, roleName string) (*logical.Response, error) {
	reserve := sess.cfg.apiKeyReserve()
	if b.apiKeys.roomy(reserve, time.Now()) {
		return nil, nil
	}
	total, limit, err := sess.client.APIKeyCount(ctx)
	if err != nil {
		if httpStatus(err) == http.StatusForbidden {
			return nil, nil // the create itself will tell
		}
		return nil, fmt.Errorf("error counting the organisation's API keys before creating one: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	if total+reserve < limit {
		b.apiKeys.observe(total, limit, time.Now())
		return nil, nil
	}
	return logical.ErrorResponse("role %q cannot issue credentials: the Datadog organisation holds %d API keys of its cap of %d "+
		"(meta.max_allowed), and config keeps %d free for people (api_key_reserve); no key was created. Use api_key_mode=shared, "+
		"which hands one API key per rotation window to every lease of the role, revoke unused leases, or ask Datadog support to raise the cap",
		roleName, total, limit, reserve), nil
}

// APIKeyCount reads the organisation's API key count and cap from one
// listing page's meta.
func (c *datadogClient) APIKeyCount(ctx context.Context) (int, int, error) {
	var out datadogV2.APIKeysResponse
	err := c.call(ctx, "API key count", true, func(ctx context.Context) (resp *http.Response, err error) {
		opts := datadogV2.NewListAPIKeysOptionalParameters().WithPageSize(1)
		out, resp, err = c.keys.ListAPIKeys(ctx, *opts)
		return resp, err
	})
	if err != nil {
		return 0, 0, err
	}
	meta := out.GetMeta()
	page := meta.GetPage()
	total, ok := page.GetTotalFilteredCountOk()
	if !ok || total == nil {
		return 0, 0, errors.New("Datadog API key count: the answer had no meta.page.total_filtered_count")
	}
	return int(*total), int(meta.GetMaxAllowed()), nil
}

func (r *datadogRole) apiKeyRotation() time.Duration {
	if r.APIKeyRotation > 0 {
		return r.APIKeyRotation
	}
	return defaultAPIKeyRotation
}

// sharesAPIKey: the role's leases hold the role's shared API key.
func (r *datadogRole) sharesAPIKey() bool {
	return (r.kind().withAPIKey || r.CredentialType == kindAPIKey) && r.APIKeyMode == apiKeyModeShared
}

// ownsAPIKey: each lease of the role gets an API key of its own.
func (r *datadogRole) ownsAPIKey() bool {
	return (r.kind().withAPIKey || r.CredentialType == kindAPIKey) && r.APIKeyMode == apiKeyModeDynamic
}

func (c *datadogConfig) apiKeyReserve() int {
	if c.APIKeyReserve == nil {
		return defaultAPIKeyReserve
	}
	return *c.APIKeyReserve
}

// joinShared waits for the shared API key a creds request got while its
// own keys were being created, and names it in the record: the lease ends
// by the key's end.
func (b *datadogBackend) joinShared(rec *credentialRecord) (*logical.Response, error) {
	if rec.terms == nil || rec.terms.shared == nil || rec.SharedAPIKey != "" {
		return nil, nil
	}
	k, resp, err := rec.terms.shared()
	if resp != nil || err != nil {
		return resp, err
	}
	rec.SharedAPIKey = k.rec.ID
	rec.terms.keyEnds = k.rec.LeaseEnds
	return nil, nil
}
