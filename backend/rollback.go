package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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
		if b.isKnownIssued(id) {
			continue
		}
		rec, err := getRecord(ctx, req.Storage, id)
		if err != nil || rec == nil {
			errs = append(errs, err)
			continue
		}
		if rec.Issued {
			b.knownIssued(id)
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
