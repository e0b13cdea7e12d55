package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// The watch reads the live credentials of every lease from Datadog, and
// deletes at once those Datadog flagged as leaked, and those not used for
// their role's idle_ttl, instead of letting them live until their lease
// ends. It runs every watch_interval (config) from Vault's periodic timer,
// and each renewal does the same check for its own lease. A lease whose
// credential it deleted is marked in its record: its renewals are refused,
// saying why, and its revocation succeeds (its objects are gone already).
const (
	defaultWatchInterval = 5 * time.Minute
	// Vault calls the periodic function every minute: a shorter interval
	// would not run more often.
	minWatchInterval = time.Minute
	// Datadog reports a key's last use late, by an amount it does not
	// document (last_used_at, date_last_used): defaultLastUseLag is the
	// lag assumed unless config's last_use_lag says otherwise. A key in use
	// shows a last use no older than the lag, so an idle_ttl of at least
	// twice the lag never takes it for idle, not even right after its
	// creation, before any use is reported.
	defaultLastUseLag = time.Hour
	idleTTLPerLag     = 2
	minIdleTTLFloor   = time.Minute
	// watchSlack lets a run start on the timer's tick that comes a few
	// seconds short of a full interval after the last run started, which
	// would otherwise wait for the tick after.
	watchSlack = 10 * time.Second
	// A run reads batches of records from storage, and each batch's
	// objects with a few calls at a time: enough to keep up, few enough to
	// leave creds requests most of Datadog's rate limits.
	watchBatch   = 100
	watchWorkers = 2
	watchTimeout = 30 * time.Minute

	watchStatusPath = "watch/status"
)

// Why the engine kills a lease's credential early.
const (
	causeLeaked = "leaked"
	causeIdle   = "idle"
)

// killed records that the engine deleted a lease's credential in Datadog
// before its lease ended, and why.
type killed struct {
	Cause  string    `json:"cause"`  // leaked or idle
	Reason string    `json:"reason"` // what Datadog reported, for the refusals of renewals
	At     time.Time `json:"at"`
	// Deleted is set once every object is gone from Datadog; until then
	// each watch run tries again.
	Deleted bool `json:"deleted"`
}

// refusal is what a renewal of the killed lease answers.
func (k *killed) refusal() string {
	msg := fmt.Sprintf("the engine deleted this lease's credential in Datadog at %s: %s; request new credentials",
		k.At.UTC().Format(time.RFC3339), k.Reason)
	if !k.Deleted {
		msg = fmt.Sprintf("the engine is deleting this lease's credential in Datadog since %s: %s; request new credentials",
			k.At.UTC().Format(time.RFC3339), k.Reason)
	}
	return msg
}

// watchInterval is config's watch_interval: the default when never set.
func (c *datadogConfig) watchInterval() time.Duration {
	if c.WatchInterval == nil {
		return defaultWatchInterval
	}
	return *c.WatchInterval
}

// setWatchInterval reads watch_interval from a config write and returns
// the message of a 400 when it is out of bounds.
func (c *datadogConfig) setWatchInterval(d *framework.FieldData) string {
	v, ok := d.GetOk("watch_interval")
	if !ok {
		return ""
	}
	interval := time.Duration(v.(int)) * time.Second
	if interval < 0 || interval > 0 && interval < minWatchInterval {
		return fmt.Sprintf("watch_interval %s is not allowed: give at least %s (Vault runs the engine's periodic checks every minute), or 0 to turn the watch off", interval, minWatchInterval)
	}
	c.WatchInterval = &interval
	return ""
}

// lastUseLag is how late Datadog is taken to report a key's use.
func (c *datadogConfig) lastUseLag() time.Duration {
	if c == nil || c.LastUseLag == nil {
		return defaultLastUseLag
	}
	return *c.LastUseLag
}

// minIdleTTL is the shortest idle_ttl that never kills a key in use.
func (c *datadogConfig) minIdleTTL() time.Duration {
	return max(idleTTLPerLag*c.lastUseLag(), minIdleTTLFloor)
}

// idleTTL is the idle_ttl the watch applies to a role: never less than
// the safe minimum, whatever the role was written with before config's
// last_use_lag changed.
func (c *datadogConfig) idleTTL(role *datadogRole) time.Duration {
	if role == nil || role.IdleTTL <= 0 {
		return 0
	}
	return max(role.IdleTTL, c.minIdleTTL())
}

// idleTTLProblem returns the message of a 400 when a role's idle_ttl is
// out of bounds; cfg may be nil before the engine is configured.
func (r *datadogRole) idleTTLProblem(cfg *datadogConfig) string {
	switch minimum := cfg.minIdleTTL(); {
	case r.IdleTTL < 0 || r.IdleTTL > 0 && r.IdleTTL < minimum:
		return fmt.Sprintf("idle_ttl %s is not allowed: give at least %s (twice config's last_use_lag of %s: Datadog reports a key's use that late, "+
			"and a key in use must never look idle), or 0 to keep unused credentials until their lease ends", r.IdleTTL, minimum, cfg.lastUseLag())
	case r.MaxTTL > 0 && r.IdleTTL > r.MaxTTL:
		return fmt.Sprintf("idle_ttl (%s) must not exceed max_ttl (%s): the lease would end first", r.IdleTTL, r.MaxTTL)
	}
	return ""
}

// judge decides from the objects' states whether a lease's credential
// must die now: it is leaked if any of its objects is, and idle only if
// all of them went unused (since creation, when never used) for idleTTL.
// Nil: it lives.
func judge(objects []datadogObject, states []objectState, idleTTL time.Duration, now time.Time) *killed {
	for i, st := range states {
		if st.Leak != nil {
			o := objects[i]
			return &killed{Cause: causeLeaked, Reason: fmt.Sprintf("Datadog flagged its %s %s (%s) as leaked (%s)", describeKind(o.Kind), o.ID, o.Name, st.Leak)}
		}
	}
	if idleTTL <= 0 || len(states) == 0 {
		return nil
	}
	var latest time.Time
	uses := make([]string, len(states))
	for i, st := range states {
		o, since := objects[i], st.CreatedAt
		uses[i] = fmt.Sprintf("%s %s never used since its creation at %s", describeKind(o.Kind), o.ID, since.UTC().Format(time.RFC3339))
		if st.LastUsed != nil && st.LastUsed.After(since) {
			since = *st.LastUsed
			uses[i] = fmt.Sprintf("%s %s last used at %s", describeKind(o.Kind), o.ID, since.UTC().Format(time.RFC3339))
		}
		if since.IsZero() || now.Sub(since) < idleTTL {
			return nil // in use, or Datadog did not say: never a guess
		}
		if since.After(latest) {
			latest = since
		}
	}
	return &killed{Cause: causeIdle, Reason: fmt.Sprintf("not used for %s, longer than its role's idle_ttl of %s (%s)",
		now.Sub(latest).Round(time.Second), idleTTL, strings.Join(uses, "; "))}
}

// watchState is the backend's part of the watch.
type watchState struct {
	mu     sync.Mutex
	last   *watchStatus // the running or last run, nil before the first
	cancel context.CancelFunc
}

// watchStatus is what watch/status shows of a run.
type watchStatus struct {
	State      string // running, finished, error
	StartedAt  time.Time
	FinishedAt time.Time
	Checked    int // leases whose credentials were read
	Leaked     int // leases killed because Datadog flagged a credential as leaked
	Idle       int // leases killed because their credential went unused for idle_ttl
	Failed     int // leases that could not be read, or whose credential could not be deleted
	Error      string

	mu   sync.Mutex
	errs []error
}

func (s *watchStatus) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Failed++
	if len(s.errs) < 10 { // the first few say enough
		s.errs = append(s.errs, err)
	}
}

func (s *watchStatus) snapshot() watchStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return watchStatus{State: s.State, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Checked: s.Checked,
		Leaked: s.Leaked, Idle: s.Idle, Failed: s.Failed, Error: s.Error}
}

// periodicWatch starts a watch run in the background when watch_interval
// has passed since the last one started (or, before any, since the engine
// started) and none is running.
func (b *datadogBackend) periodicWatch(ctx context.Context, s logical.Storage) error {
	if b.System().Tainted() {
		return nil // the mount is going: its leases are being revoked
	}
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil {
		return err
	}
	interval := sess.cfg.watchInterval()
	if interval == 0 {
		return nil
	}
	b.watch.mu.Lock()
	defer b.watch.mu.Unlock()
	since := b.started
	if last := b.watch.last; last != nil {
		if last.snapshot().State == "running" {
			return nil
		}
		since = last.StartedAt
	}
	if time.Since(since)+watchSlack < interval {
		return nil
	}
	status := &watchStatus{State: "running", StartedAt: time.Now().UTC()}
	b.watch.last = status
	runCtx, cancel := context.WithTimeout(context.Background(), watchTimeout)
	b.watch.cancel = cancel
	go func() {
		defer cancel()
		b.runWatch(runCtx, s, sess, status)
	}()
	return nil
}

// stopWatch cancels a running watch: the mount is going away.
func (b *datadogBackend) stopWatch() {
	b.watch.mu.Lock()
	defer b.watch.mu.Unlock()
	if b.watch.cancel != nil {
		b.watch.cancel()
	}
}

// runWatch does one run and records its outcome.
func (b *datadogBackend) runWatch(ctx context.Context, s logical.Storage, sess *session, status *watchStatus) {
	err := b.watchRecords(ctx, s, sess, status)
	status.mu.Lock()
	status.FinishedAt = time.Now().UTC()
	status.State = "finished"
	if err = errors.Join(append(status.errs, err)...); err != nil {
		status.State, status.Error = "error", err.Error()
	}
	status.mu.Unlock()
	args := []interface{}{"checked", status.Checked, "leaked", status.Leaked, "idle", status.Idle, "failed", status.Failed,
		"duration", status.FinishedAt.Sub(status.StartedAt)}
	if err != nil {
		b.Logger().Error("watch run finished with errors", append(args, "error", err)...)
		return
	}
	b.Logger().Debug("watch run finished", args...)
}

// watchRecords checks the leases of every issued record, a batch at a
// time.
func (b *datadogBackend) watchRecords(ctx context.Context, s logical.Storage, sess *session, status *watchStatus) error {
	ids, err := s.List(ctx, recordPrefix)
	if err != nil {
		return err
	}
	for start := 0; start < len(ids); start += watchBatch {
		batch := make(chan *credentialRecord)
		var wg sync.WaitGroup
		for range watchWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rec := range batch {
					b.watchRecord(ctx, s, sess, rec, status)
				}
			}()
		}
		var readErr error
		for _, id := range ids[start:min(start+watchBatch, len(ids))] {
			rec, err := getRecord(ctx, s, id)
			if err != nil {
				readErr = err
				break
			}
			if rec != nil && rec.Issued && (rec.Killed == nil || !rec.Killed.Deleted) {
				batch <- rec
			}
		}
		close(batch)
		wg.Wait()
		if readErr != nil {
			return readErr
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("watch run stopped after %d of %d records: %w", min(start+watchBatch, len(ids)), len(ids), err)
		}
	}
	return nil
}

// watchRecord reads one lease's objects from Datadog and kills its
// credential when judge says so.
func (b *datadogBackend) watchRecord(ctx context.Context, s logical.Storage, sess *session, rec *credentialRecord, status *watchStatus) {
	if ctx.Err() != nil {
		return
	}
	if rec.Killed != nil { // its deletion failed in an earlier run
		if err := b.kill(ctx, s, sess, rec, rec.Killed, auditDetailsOfRecord(rec)); err != nil {
			status.fail(err)
		}
		return
	}
	if time.Now().After(rec.LeaseEnds) {
		return // the lease is over: its revocation deletes the credential, tidy what escapes
	}
	role, err := b.cachedRole(ctx, s, rec.Role)
	if err != nil {
		status.fail(err)
		return
	}
	idleTTL := sess.cfg.idleTTL(role) // 0 for a deleted role: its leases are still checked for leaks
	for _, o := range rec.Objects {
		if err := sess.cfg.reaches(o); err != nil {
			status.fail(err)
			return
		}
	}
	states, errs := readStates(ctx, sess.client, rec.Objects)
	for i, err := range errs {
		o := rec.Objects[i]
		if errors.Is(err, errNotFound) {
			return // deleted outside Vault: renewals are refused, and tidy drops the record
		}
		if err != nil {
			status.fail(fmt.Errorf("reading Datadog %s %s (%s) of role %q: %w", describeKind(o.Kind), o.ID, o.Name, rec.Role, err))
			return
		}
	}
	if rec.Shared == nil { // a shared API key is checked, but is no lease
		status.mu.Lock()
		status.Checked++
		status.mu.Unlock()
	}
	verdict := judge(rec.Objects, states, idleTTL, time.Now())
	if verdict == nil {
		return
	}
	verdict.At = time.Now().UTC()
	status.mu.Lock()
	if verdict.Cause == causeLeaked {
		status.Leaked++
	} else {
		status.Idle++
	}
	status.mu.Unlock()
	if err := b.kill(ctx, s, sess, rec, verdict, auditDetailsOfRecord(rec)); err != nil {
		status.fail(err)
	}
}

// kill deletes a lease's credential in Datadog before its lease ends. The
// record is marked first, so that renewals are refused from then on even
// if Datadog fails the deletion, and again once it succeeded. A record
// gone meanwhile belongs to a lease just revoked: its objects are deleted
// anyway (what is gone counts as deleted). Once the credential is gone,
// the kill is reported to the issuance trail with what trail says of it.
func (b *datadogBackend) kill(ctx context.Context, s logical.Storage, sess *session, rec *credentialRecord, verdict *killed, trail auditDetails) error {
	if err := b.markKilled(ctx, s, rec.ID, verdict); err != nil {
		return fmt.Errorf("error marking the record %s of role %q: %w", rec.ID, rec.Role, err)
	}
	args := []interface{}{"record", rec.ID, "role", rec.Role, "cause", verdict.Cause, "credentials", describeObjects(rec.Objects), "reason", verdict.Reason}
	if err := b.deleteObjects(ctx, sess, rec.Objects, time.Time{}); err != nil {
		b.Logger().Error("a credential the engine must kill early could not be deleted in Datadog; retrying every watch run", append(args, "error", err)...)
		return err
	}
	verdict.Deleted = true
	b.Logger().Warn("deleted a credential in Datadog before its lease ended: renewals of its lease are refused", args...)
	// A killed shared API key goes to no new lease; a killed lease lets go
	// of the shared API key it held.
	b.retireSharedKey(rec.ID)
	if err := b.releaseSharedKey(ctx, s, rec.ID); err != nil {
		b.Logger().Warn("a killed lease could not let go of its role's shared API key; it is deleted once no lease holds it", "record", rec.ID, "error", err)
	}
	trail.Reason = verdict.Reason
	event := auditLeak
	if verdict.Cause == causeIdle {
		event = auditIdle
	}
	b.auditEvent(ctx, s, event, trail)
	return b.markKilled(ctx, s, rec.ID, verdict)
}

// refuseKilled refuses the renewal of a lease whose credential the engine
// killed, saying why.
func (b *datadogBackend) refuseKilled(ctx context.Context, req *logical.Request) error {
	id, _ := req.Secret.InternalData["record"].(string)
	if id == "" {
		return nil
	}
	rec, err := getRecord(ctx, req.Storage, id)
	if err != nil || rec == nil || rec.Killed == nil {
		return err
	}
	return renewRefused("%s", rec.Killed.refusal())
}

// checkOnRenew is the watch's check for one lease at its renewal: a
// credential that must die is killed now, and the renewal refused.
func (b *datadogBackend) checkOnRenew(ctx context.Context, req *logical.Request, sess *session, role *datadogRole, objects []datadogObject, states []objectState) error {
	verdict := judge(objects, states, sess.cfg.idleTTL(role), time.Now())
	if verdict == nil {
		return nil
	}
	verdict.At = time.Now().UTC()
	id, _ := req.Secret.InternalData["record"].(string)
	roleName, _ := req.Secret.InternalData["role"].(string)
	rec := &credentialRecord{ID: id, Role: roleName, Objects: objects}
	if err := b.kill(ctx, req.Storage, sess, rec, verdict, auditDetailsOfLease(req.Secret)); err != nil {
		return renewRefused("%s (deleting it failed: %v; the engine retries)", verdict.refusal(), err)
	}
	return renewRefused("%s", verdict.refusal())
}

func pathWatchStatus(b *datadogBackend) *framework.Path {
	return &framework.Path{
		Pattern: watchStatusPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "watch-status",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:  b.pathWatchStatusRead,
				Summary:   "Read the running or last watch run: when, how many leases it checked and killed.",
				Responses: watchStatusResponses(),
			},
		},
		HelpSynopsis:    pathWatchStatusHelpSyn,
		HelpDescription: pathWatchStatusHelpDesc,
	}
}

func (b *datadogBackend) pathWatchStatusRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	b.watch.mu.Lock()
	last := b.watch.last
	b.watch.mu.Unlock()
	status := watchStatus{State: "never"}
	since := b.started
	if last != nil {
		status = last.snapshot()
		since = status.StartedAt
	}
	data := map[string]interface{}{
		"state":   status.State,
		"checked": status.Checked,
		"leaked":  status.Leaked,
		"idle":    status.Idle,
		"failed":  status.Failed,
		"error":   status.Error,
	}
	if sess != nil && sess.cfg.watchInterval() > 0 {
		// Vault's timer fires every minute: the run starts on the first
		// tick at or after this.
		data["next_run_at"] = since.Add(sess.cfg.watchInterval() - watchSlack).UTC().Format(time.RFC3339)
	}
	if last != nil {
		data["started_at"] = status.StartedAt.Format(time.RFC3339)
	}
	if !status.FinishedAt.IsZero() {
		data["finished_at"] = status.FinishedAt.Format(time.RFC3339)
		data["duration_seconds"] = status.FinishedAt.Sub(status.StartedAt).Seconds()
	}
	return &logical.Response{Data: data}, nil
}

func watchStatusResponses() map[int][]framework.Response {
	return ok("The running or last watch run of this node, and when the next is due.", map[string]*framework.FieldSchema{
		"state": {
			Type:          framework.TypeString,
			Required:      true,
			AllowedValues: []interface{}{"never", "running", "finished", "error"},
			Description:   "never (no run yet on this node), running, finished, or error (then see error).",
		},
		"next_run_at":      field(framework.TypeTime, false, "When the next run is due (Vault's one-minute timer starts it on its first tick after); absent when the watch is off or the engine not configured."),
		"started_at":       field(framework.TypeTime, false, "When the run started; absent before the first."),
		"finished_at":      field(framework.TypeTime, false, "When the run ended; absent while it runs."),
		"duration_seconds": field(framework.TypeFloat, false, "How long the run took, in seconds; absent while it runs."),
		"checked":          field(framework.TypeInt, true, "Leases whose credentials the run read from Datadog."),
		"leaked":           field(framework.TypeInt, true, "Of those, leases whose credential Datadog flagged as leaked: deleted in Datadog."),
		"idle":             field(framework.TypeInt, true, "Of those, leases whose credential went unused for its role's idle_ttl: deleted in Datadog."),
		"failed":           field(framework.TypeInt, true, "Leases that could not be read, or whose credential could not be deleted yet."),
		"error":            field(framework.TypeString, true, "What failed, when state is error; empty otherwise."),
	})
}

const pathWatchStatusHelpSyn = `Show the running or last watch run.`

const pathWatchStatusHelpDesc = `
Every watch_interval (config; default 5m, 0 turns it off) the engine reads
the credentials of its live leases from Datadog. A credential Datadog
flagged as leaked (leak_information), or one not used for its role's
idle_ttl (Datadog's last use of each of its keys; their creation when never
used), is deleted in Datadog at once; its lease's renewals are then refused
with the reason, and its revocation succeeds. Each renewal does the same
check for its lease.

This shows the running or last run on this node (kept in memory): its state
(never before the first run on this node, running, finished or error, with
error saying what failed), started_at, finished_at and duration_seconds once
it ended, how many leases it checked, how many it killed because their
credential leaked (leaked) or went unused (idle), and how many it could not
check or whose credential it could not delete yet (failed; the next run
tries again); and next_run_at, when the next run is due (the first one
watch_interval after the engine started), absent while the watch is off.
`
