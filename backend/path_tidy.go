package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Tidy is the safety net for what escapes revocation and rollback: it
// lists the credentials this mount made that still exist in Datadog (their
// names end with the mount's marker and a record id) and deletes those no
// record accounts for, or whose lease ended longer ago than the safety
// buffer. It drops records whose objects are gone.
const (
	tidyStatusPath       = "tidy/status"
	defaultSafetyBuffer  = time.Hour
	defaultTidyInterval  = time.Hour
	tidyTimeout          = 30 * time.Minute
	tidyMaxPages         = 100 // of 100 objects, per kind and owner
	tidyCandidatesListed = 100 // in the status, for a dry run to show
)

// tidyStatus is what tidy/status shows of the last run.
type tidyStatus struct {
	State      string                `json:"state"` // running, finished, error
	StartedAt  time.Time             `json:"started_at"`
	FinishedAt time.Time             `json:"finished_at,omitempty"`
	DryRun     bool                  `json:"dry_run"`
	Buffer     time.Duration         `json:"safety_buffer"`
	Found      int                   `json:"found"`   // credentials to delete
	Deleted    int                   `json:"deleted"` // of those, deleted
	Failed     int                   `json:"failed"`  // of those, not deleted: an error
	Dropped    int                   `json:"dropped"` // records whose objects were gone
	ByKind     map[string]*tidyCount `json:"by_kind"`
	Candidates []tidyCandidate       `json:"candidates"`
	Error      string                `json:"error,omitempty"`

	mu   sync.Mutex // the run updates the status while tidy/status reads it
	errs []error
}

type tidyCount struct {
	Found   int `json:"found"`
	Deleted int `json:"deleted"`
	Failed  int `json:"failed"`
}

type tidyCandidate struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

func pathTidy(b *datadogBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "tidy$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationVerb:   "tidy",
			},
			Fields: map[string]*framework.FieldSchema{
				"dry_run": {
					Type:        framework.TypeBool,
					Description: "Only report what would be deleted (in tidy/status), deleting nothing.",
				},
				"safety_buffer": {
					Type:        framework.TypeDurationSecond,
					Default:     int(defaultSafetyBuffer.Seconds()),
					Description: "How long after a lease's latest end its credentials are left alone, such as 1h (the default).",
				},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathTidyWrite,
					Responses:                   tidyResponses(),
					Summary:                     "Start a tidy of this mount's credentials in Datadog, in the background.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			HelpSynopsis:    pathTidyHelpSyn,
			HelpDescription: pathTidyHelpDesc,
		},
		{
			Pattern: "tidy/status$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "tidy-status",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:  b.pathTidyStatusRead,
					Summary:   "Read the running or last tidy: when, how long, what it found and deleted.",
					Responses: tidyStatusResponses(),
				},
			},
			HelpSynopsis:    pathTidyStatusHelpSyn,
			HelpDescription: pathTidyStatusHelpDesc,
		},
	}
}

func (b *datadogBackend) pathTidyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	buffer := time.Duration(d.Get("safety_buffer").(int)) * time.Second
	if buffer < 0 {
		return logical.ErrorResponse("safety_buffer must not be negative"), nil
	}
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return logical.ErrorResponse(errNotConfigured.Error()), nil
	}
	if !b.startTidy(req.Storage, sess, d.Get("dry_run").(bool), buffer) {
		return logical.ErrorResponse("a tidy is already running; see tidy/status"), nil
	}
	resp := &logical.Response{}
	resp.AddWarning("Tidy started in the background; read tidy/status for its result.")
	return logical.RespondWithStatusCode(resp, req, http.StatusAccepted)
}

func (b *datadogBackend) pathTidyStatusRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	status, err := b.lastTidy(ctx, req.Storage)
	if err != nil || status == nil {
		return nil, err
	}
	data := map[string]interface{}{
		"state":         status.State,
		"started_at":    status.StartedAt.Format(time.RFC3339),
		"dry_run":       status.DryRun,
		"safety_buffer": int64(status.Buffer.Seconds()),
		"found":         status.Found,
		"deleted":       status.Deleted,
		"failed":        status.Failed,
		"dropped":       status.Dropped,
		"by_kind":       status.ByKind,
		"candidates":    status.Candidates,
		"error":         status.Error,
	}
	if !status.FinishedAt.IsZero() {
		data["finished_at"] = status.FinishedAt.Format(time.RFC3339)
		data["duration_seconds"] = status.FinishedAt.Sub(status.StartedAt).Seconds()
	}
	return &logical.Response{Data: data}, nil
}

// startTidy runs a tidy in the background unless one is running; it
// reports whether it started one.
func (b *datadogBackend) startTidy(s logical.Storage, sess *session, dryRun bool, buffer time.Duration) bool {
	b.tidyLock.Lock()
	defer b.tidyLock.Unlock()
	if b.tidyClosed || b.tidyRunning != nil && b.tidyRunning.snapshot().State == "running" {
		return false
	}
	status := &tidyStatus{State: "running", StartedAt: time.Now().UTC(), DryRun: dryRun, Buffer: buffer, ByKind: map[string]*tidyCount{}}
	b.tidyRunning = status
	ctx, cancel := context.WithTimeout(context.Background(), tidyTimeout)
	done := make(chan struct{})
	b.tidyCancel, b.tidyDone = cancel, done
	go func() {
		defer close(done)
		defer cancel()
		b.tidy(ctx, s, sess, status)
	}()
	return true
}

// stopTidy cancels a running tidy and waits for it to return: a backend
// being cleaned up (plugin reload, step-down, unmount) must not go on
// deleting from storage another instance now owns.
func (b *datadogBackend) stopTidy() {
	b.tidyLock.Lock()
	b.tidyClosed = true
	cancel, done := b.tidyCancel, b.tidyDone
	b.tidyLock.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// lastTidy is the running or last tidy, from memory or, after a restart,
// from storage.
func (b *datadogBackend) lastTidy(ctx context.Context, s logical.Storage) (*tidyStatus, error) {
	b.tidyLock.Lock()
	defer b.tidyLock.Unlock()
	if b.tidyRunning != nil {
		return b.tidyRunning.snapshot(), nil
	}
	entry, err := s.Get(ctx, tidyStatusPath)
	if err != nil || entry == nil {
		return nil, err
	}
	status := new(tidyStatus)
	if err := entry.DecodeJSON(status); err != nil {
		return nil, fmt.Errorf("error reading the last tidy's status: %w", err)
	}
	b.tidyRunning = status
	return status.snapshot(), nil
}

func (s *tidyStatus) snapshot() *tidyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &tidyStatus{State: s.State, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, DryRun: s.DryRun, Buffer: s.Buffer,
		Found: s.Found, Deleted: s.Deleted, Failed: s.Failed, Dropped: s.Dropped, Error: s.Error, ByKind: map[string]*tidyCount{}}
	for k, c := range s.ByKind {
		copied := *c
		out.ByKind[k] = &copied
	}
	out.Candidates = append([]tidyCandidate{}, s.Candidates...)
	return out
}

// tidy does one run and stores its status.
func (b *datadogBackend) tidy(ctx context.Context, s logical.Storage, sess *session, status *tidyStatus) {
	err := b.tidyRun(ctx, s, sess, status)
	status.mu.Lock()
	status.FinishedAt = time.Now().UTC()
	status.State = "finished"
	if err = errors.Join(append(status.errs, err)...); err != nil {
		status.State, status.Error = "error", err.Error()
	}
	status.mu.Unlock()
	b.Logger().Info("tidy finished", "dry_run", status.DryRun, "found", status.Found, "deleted", status.Deleted,
		"failed", status.Failed, "dropped", status.Dropped, "duration", status.FinishedAt.Sub(status.StartedAt), "error", err)
	entry, perr := logical.StorageEntryJSON(tidyStatusPath, status.snapshot())
	if perr == nil {
		perr = s.Put(ctx, entry)
	}
	if perr != nil {
		b.Logger().Error("error storing the tidy status", "error", perr)
	}
}

func (b *datadogBackend) tidyRun(ctx context.Context, s logical.Storage, sess *session, status *tidyStatus) error {
	// Whose credentials to list: those the records name, the configured
	// identity's, and the service accounts of the roles.
	before, err := records(ctx, s)
	if err != nil {
		return err
	}
	classes, err := b.tidyClasses(ctx, s, sess.cfg, before)
	if err != nil {
		return err
	}

	// Datadog is listed before any record is read for a decision: a
	// credential listed here was created after its record was written, so
	// a missing record means an orphan, never a request in flight.
	listed := map[string]bool{} // kind/id of what Datadog holds of this mount
	for _, class := range classes {
		objects, err := sess.client.List(ctx, class, tidyMaxPages)
		if err != nil {
			status.mu.Lock()
			status.errs = append(status.errs, fmt.Errorf("listing Datadog %ss of %s: %w", describeKind(class.Kind), describeOwner(class.Owner), err))
			status.mu.Unlock()
			continue
		}
		for _, o := range objects {
			if b.ownRootName(o.Name) {
				b.tidyRoot(ctx, s, sess, status, o)
				continue
			}
			marker, recordID, ours := parseName(o.Name)
			if !ours || !b.ownMarker(marker) {
				continue // never another mount's, nor anything the engine did not name
			}
			listed[o.Kind+"/"+o.ID] = true
			// Under the record's lock: a renewal moving the lease's expiry
			// waits, and is refused once the expiry has passed.
			lock := b.recordLock(recordID)
			lock.Lock()
			reason, err := b.tidyReason(ctx, s, recordID, status.Buffer)
			if err == nil && reason != "" && b.tidyDelete(ctx, sess, status, o.datadogObject, reason) {
				listed[o.Kind+"/"+o.ID] = false // its record, if any, may go below
			}
			lock.Unlock()
			if err != nil {
				return err
			}
		}
	}

	// Records of leases whose objects are all gone (deleted out of band, or
	// by this run) account for nothing any more. Absence from a listing is
	// not proof (listings may lag behind creates: records younger than the
	// buffer wait): each object is asked for by its id.
	for _, rec := range before {
		ended := rec.ended(status.Buffer)
		// A killed credential's record stays while its lease may live: its
		// renewals say why they are refused.
		if !rec.Issued || !ended && (time.Since(rec.CreatedAt) < status.Buffer || rec.Killed != nil) {
			continue
		}
		// A lease that holds a shared API key accounts for it until it ends,
		// whatever became of its own keys.
		if rec.SharedAPIKey != "" && !ended {
			continue
		}
		if gone := b.allGone(ctx, sess, rec.Objects, listed); gone && !status.DryRun {
			if err := b.deleteRecord(ctx, s, rec.ID); err != nil {
				return err
			}
			status.mu.Lock()
			status.Dropped++
			status.mu.Unlock()
		}
	}
	return nil
}

// allGone reports whether Datadog holds none of the objects: none listed
// by this run, and each asked for by its id, all at once.
func (b *datadogBackend) allGone(ctx context.Context, sess *session, objects []datadogObject, listed map[string]bool) bool {
	for _, o := range objects {
		if listed[o.Kind+"/"+o.ID] || sess.cfg.reaches(o) != nil {
			return false
		}
	}
	gone := make([]bool, len(objects))
	inParallel(len(objects), func(i int) {
		exists, err := sess.client.Exists(ctx, objects[i])
		gone[i] = err == nil && !exists
	})
	return !slices.Contains(gone, false)
}

// tidyReason says why tidy deletes a credential of this mount whose name
// carries recordID, or "" to leave it: it has no record, its lease ended
// longer ago than the buffer, or its request failed longer ago than that
// (a WAL entry the rollback should have replayed).
func (b *datadogBackend) tidyReason(ctx context.Context, s logical.Storage, recordID string, buffer time.Duration) (string, error) {
	rec, err := getRecord(ctx, s, recordID)
	switch {
	case err != nil:
		return "", err
	case rec == nil:
		return "no lease or write-ahead log entry accounts for it", nil
	case rec.Issued && !rec.LeaseEnds.IsZero() && time.Since(rec.LeaseEnds) > buffer:
		return fmt.Sprintf("its lease ended at %s at the latest", rec.LeaseEnds.Format(time.RFC3339)), nil
	case rec.Issued && rec.Expires != nil && time.Since(*rec.Expires) > buffer:
		return fmt.Sprintf("its lease expired at %s, and was not renewed", rec.Expires.Format(time.RFC3339)), nil
	case !rec.Issued && time.Since(rec.RequestEnds) > buffer:
		// The rollback's, but tidy is its net: no record escapes both.
		return fmt.Sprintf("its creds request failed, and was over at %s", rec.RequestEnds.Format(time.RFC3339)), nil
	}
	return "", nil
}

// tidyDelete deletes one credential (or only counts it, in a dry run) and
// reports whether it is gone.
func (b *datadogBackend) tidyDelete(ctx context.Context, sess *session, status *tidyStatus, o datadogObject, reason string) bool {
	status.mu.Lock()
	count := status.ByKind[o.Kind]
	if count == nil {
		count = &tidyCount{}
		status.ByKind[o.Kind] = count
	}
	status.Found++
	count.Found++
	if len(status.Candidates) < tidyCandidatesListed {
		status.Candidates = append(status.Candidates, tidyCandidate{Kind: o.Kind, ID: o.ID, Name: o.Name, Reason: reason})
	}
	status.mu.Unlock()
	if status.DryRun {
		return false
	}
	err := sess.client.Delete(ctx, o)
	status.mu.Lock()
	defer status.mu.Unlock()
	if err != nil && !errors.Is(err, errNotFound) {
		status.Failed++
		count.Failed++
		status.errs = append(status.errs, fmt.Errorf("deleting Datadog %s %s (%s): %w", describeKind(o.Kind), o.ID, o.Name, err))
		return false
	}
	status.Deleted++
	count.Deleted++
	b.Logger().Warn("tidy deleted a Datadog credential that escaped revocation and rollback", "kind", o.Kind, "id", o.ID, "name", o.Name, "reason", reason)
	return true
}

// tidyRoot deletes a root credential of this mount that config does not
// hold: the new credential of a rotation whose create Datadog applied after
// the rotation gave up on it. Under rootLock, so that no rotation is
// between its create and storing config.
func (b *datadogBackend) tidyRoot(ctx context.Context, s logical.Storage, sess *session, status *tidyStatus, o listedObject) {
	if o.CreatedAt.IsZero() || time.Since(o.CreatedAt) <= status.Buffer {
		return
	}
	b.rootLock.Lock()
	defer b.rootLock.Unlock()
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil || cfg.holdsRoot(o.datadogObject, o.Visible) {
		return
	}
	b.tidyDelete(ctx, sess, status, o.datadogObject, "a root credential of this mount that config does not hold")
}

// tidyClasses lists what to ask Datadog for: each kind, for each owner
// whose credentials the engine may have made.
func (b *datadogBackend) tidyClasses(ctx context.Context, s logical.Storage, cfg *datadogConfig, recs []*credentialRecord) ([]datadogObject, error) {
	seen := map[string]bool{}
	var classes []datadogObject
	add := func(kind, owner string) {
		if kind == kindAPIKey {
			owner = "" // API keys are the organisation's: one listing
		}
		if key := kind + "/" + owner; !seen[key] {
			seen[key] = true
			classes = append(classes, datadogObject{Kind: kind, Owner: owner, Name: namePrefix, Home: cfg.home()})
		}
	}
	add(kindApplicationKey, cfg.OwnerID)
	add(kindPersonalAccessToken, cfg.OwnerID)
	add(cfg.rootKind(), cfg.OwnerID)
	add(kindAPIKey, "")
	for _, rec := range recs {
		for _, o := range rec.Objects {
			if cfg.reaches(o) == nil {
				add(o.Kind, cmp.Or(o.Owner, cfg.OwnerID))
			}
		}
	}
	roles, err := s.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	for _, name := range roles {
		role, err := getRole(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if role != nil {
			for _, id := range role.serviceAccounts() {
				add(role.CredentialType, id)
			}
		}
	}
	sort.Slice(classes, func(i, j int) bool { return classes[i].Kind+classes[i].Owner < classes[j].Kind+classes[j].Owner })
	return classes, nil
}

// finalSweepTimeout bounds the sweep of a mount being disabled.
const finalSweepTimeout = 5 * time.Minute

// finalSweep runs when the mount is disabled, once Vault has revoked its
// leases and before the engine lets go of its root key: every credential
// that carries this mount's marker is then an orphan (a WAL entry whose
// rollback failed, a create Datadog applied after the engine looked for
// it), and the mount's storage, the last record naming it, is about to be
// cleared. It deletes each one, those its records name by id as well as
// those Datadog lists, and logs every one it could not delete.
func (b *datadogBackend) finalSweep(ctx context.Context, cfg *datadogConfig) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSweepTimeout)
	defer cancel()
	client, err := b.newClient(cfg, b.Logger())
	if err != nil {
		b.Logger().Error("the mount is disabled, but its Datadog credentials could not be swept", "error", err)
		return
	}
	sess := &session{cfg: cfg, client: client}
	recs, err := records(ctx, b.storage)
	if err != nil {
		b.Logger().Error("the mount is disabled, but its records could not be read for the final sweep", "error", err)
	}
	var left []datadogObject
	for _, rec := range recs {
		for _, o := range rec.Objects {
			if err := b.deleteObjects(ctx, sess, []datadogObject{o}, rec.CreatedAt.Add(-maxClockSkew)); err != nil {
				left = append(left, o)
				b.Logger().Debug("final sweep: a recorded credential could not be deleted", "id", o.ID, "name", o.Name, "error", err)
			}
		}
	}
	classes, err := b.tidyClasses(ctx, b.storage, cfg, recs)
	if err != nil {
		b.Logger().Error("the mount is disabled, but the owners of its credentials could not be listed", "error", err)
	}
	var unlisted []error
	for _, class := range classes {
		objects, err := sess.client.List(ctx, class, tidyMaxPages)
		if err != nil {
			unlisted = append(unlisted, fmt.Errorf("%ss of %s: %w", describeKind(class.Kind), describeOwner(class.Owner), err))
			continue
		}
		for _, o := range objects {
			if marker, _, ours := parseName(o.Name); !ours || !b.ownMarker(marker) {
				continue
			}
			if err := sess.client.Delete(ctx, o.datadogObject); err != nil && !errors.Is(err, errNotFound) {
				left = append(left, o.datadogObject)
				continue
			}
			b.Logger().Warn("final sweep of the disabled mount deleted a Datadog credential no lease held", "kind", o.Kind, "id", o.ID, "name", o.Name)
		}
	}
	for _, o := range left {
		b.Logger().Error("the mount is disabled, but a Datadog credential it made could not be deleted: delete it in Datadog",
			"kind", o.Kind, "id", o.ID, "name", o.Name, "owner", o.Owner, "org", o.Home.OrgID)
	}
	if err := errors.Join(unlisted...); err != nil {
		b.Logger().Error("the mount is disabled, but Datadog could not list some of its credentials: look for names ending in -"+b.marker+
			"<16 characters> in Datadog and delete them", "error", err)
	}
}

// describeOwner names a listing's owner for a message: a user, or the
// organisation (API keys).
func describeOwner(owner string) string {
	if owner == "" {
		return "the organisation"
	}
	return "user " + owner
}

// periodicTidy starts a tidy when tidy_interval has passed since the last
// one started (or, before any, since the engine started).
func (b *datadogBackend) periodicTidy(ctx context.Context, s logical.Storage) error {
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil || sess.cfg.TidyInterval == 0 {
		return err
	}
	last, err := b.lastTidy(ctx, s)
	if err != nil {
		return err
	}
	since := b.started
	if last != nil {
		since = last.StartedAt
	}
	if time.Since(since) >= sess.cfg.TidyInterval {
		b.startTidy(s, sess, false, defaultSafetyBuffer)
	}
	return nil
}

const pathTidyHelpSyn = `Delete credentials of this mount that no lease accounts for.`

const pathTidyHelpDesc = `
Revocation and the write-ahead log rollback delete every credential the
engine creates; tidy is the safety net for what escapes them anyway (a
Datadog change applied long after an error, a lost lease). It lists the
credentials in Datadog whose names carry this mount's marker and deletes
those that no lease or write-ahead log entry accounts for, whose lease
ended longer ago than safety_buffer (default 1h: past its max TTL, or past
its expiry without a renewal, which a lease Vault forgot never gets), or
whose creds request failed longer ago than that without the rollback
deleting them. It never touches another
mount's credentials, nor anything the engine did not name, nor a
credential whose lease can still be live. It also deletes this mount's root
credentials (named by config/rotate-root) that config does not hold and that
are older than safety_buffer: those of a rotation that gave up on them.
Records of leases whose credentials were deleted outside Vault are dropped.

It runs in the background: the write answers 202 Accepted at once, and
tidy/status shows the result. One tidy runs at a time; a write while one runs
is refused. With dry_run it only reports what it would delete. The engine
also runs it every tidy_interval (config; default 1h, 0 turns it off).
`

const pathTidyStatusHelpSyn = `Show the running or last tidy.`

const pathTidyStatusHelpDesc = `
Shows the running or last tidy (nothing before the first one): its state
(running, finished or error, with error saying what failed), started_at,
finished_at and duration_seconds once it ended, dry_run and safety_buffer (in
seconds), how many credentials it found to delete, deleted and failed to
delete (found, deleted, failed, and the same per credential kind in by_kind),
how many records of leases it dropped (dropped), and the first 100 credentials
found (candidates: kind, id, name and reason), which a dry run only lists.
`
