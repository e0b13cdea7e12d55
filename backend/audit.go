package backend

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// The issuance trail: with config's audit_events on, the engine posts a
// Datadog event for each credential it issues, renews or deletes, so that
// Datadog's own event explorer shows which Vault identity held which key,
// and why the key died.
//
// Events go through Datadog's v1 events API (POST /api/v1/events,
// datadogV1.EventsApi.CreateEvent): the v2 intake takes only "change" and
// "alert" events, neither of which a credential's life is, while v1 takes
// any informational event, with tags to search by (vault_role:,
// datadog_key_id:, ...) and an aggregation key that groups one lease's
// events. It authenticates with the API key alone.
//
// Sending never slows or fails the Vault request: events are queued and
// posted by a few background workers, each with a bounded time; an event
// that cannot be posted (Datadog down, the queue full, the plugin stopping)
// is logged and counted, and config read shows the counts. No event holds
// a secret: keys are named by id and name only.
//
// The watch (watch.go) reports the credentials it kills early, leaked or
// idle, through auditEvent once they are gone from Datadog.

// Kinds of audit events.
const (
	auditIssue  = "issue"
	auditRenew  = "renew"
	auditRevoke = "revoke"
	auditLeak   = "leak"
	auditIdle   = "idle"
)

// auditDetails is what an event says about a credential. Never a secret.
type auditDetails struct {
	Role           string
	CredentialType string
	DisplayName    string // the Vault display name of the token that asked for it
	EntityID       string // its Vault entity; empty for tokens without one (root)
	MountPath      string // where the engine is mounted, when the request says
	LeaseID        string // empty at issue: Vault names the lease after the engine answers
	Record         string // the engine's id of the lease, also the end of its keys' names
	Objects        []datadogObject
	Scopes         []string
	LeaseExpires   time.Time // when the lease ends unless renewed; zero when unknown
	LeaseMaxEnds   time.Time // the latest it can end, renewals included
	Reason         string
}

// auditDetailsOfLease reads what a lease records about its credential, for
// events about it: renewals, revocations, and kills of a live lease.
func auditDetailsOfLease(secret *logical.Secret) auditDetails {
	str := func(key string) string { s, _ := secret.InternalData[key].(string); return s }
	// Vault names the lease to revocations, not to renewals.
	d := auditDetails{Role: str("role"), Record: str("record"), DisplayName: str("display_name"), EntityID: str("entity_id"),
		LeaseID: secret.LeaseID}
	d.Objects, _ = decodeObjects(secret)
	var bound roleBinding
	if mapToStruct(secret.InternalData["binding"], &bound) == nil {
		d.CredentialType, d.Scopes = bound.CredentialType, bound.Scopes
	}
	// The engine's bound, a few seconds past Vault's (see leaseEnds),
	// unless the caller knows better.
	if ends, err := time.Parse(time.RFC3339Nano, str("lease_ends")); err == nil {
		d.LeaseMaxEnds = ends
	}
	return d
}

// auditDetailsOfRecord is auditDetails from the engine's record of a lease,
// for events found from the records (a leaked or idle credential).
func auditDetailsOfRecord(rec *credentialRecord) auditDetails {
	d := auditDetails{Role: rec.Role, Record: rec.ID, DisplayName: rec.DisplayName, EntityID: rec.EntityID,
		Objects: rec.Objects, LeaseMaxEnds: rec.LeaseEnds}
	if len(rec.Objects) > 0 {
		d.CredentialType = rec.Objects[0].Kind
	}
	return d
}

// auditEvent reports an event of kind (auditIssue, auditRenew, auditRevoke,
// auditLeak, auditIdle) about a credential, when config's audit_events is
// on. It returns at once: the event is posted in the background, and a
// failure to post it is logged and counted, never returned.
func (b *datadogBackend) auditEvent(ctx context.Context, s logical.Storage, kind string, d auditDetails) {
	if sess := b.auditSession(ctx, s); sess != nil {
		b.postAudit(sess, kind, d)
	}
}

// auditSession is the session events are posted with, or nil while
// config's audit_events is off: callers gather an event's details only
// when there is one.
func (b *datadogBackend) auditSession(ctx context.Context, s logical.Storage) *session {
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil || !sess.cfg.AuditEvents {
		return nil
	}
	return sess
}

// postAudit queues an event for the background workers.
func (b *datadogBackend) postAudit(sess *session, kind string, d auditDetails) {
	b.trail.post(b.Logger(), auditJob{client: sess.client, kind: kind, details: d, at: time.Now()})
}

// auditIssued reports a credential just issued, with its lease's expiry.
func (b *datadogBackend) auditIssued(ctx context.Context, req *logical.Request, rec *credentialRecord, kind credentialKind, scopes []string, lease *logical.Secret) {
	sess := b.auditSession(ctx, req.Storage)
	if sess == nil {
		return
	}
	d := auditDetails{Role: rec.Role, CredentialType: kind.name, DisplayName: req.DisplayName, EntityID: req.EntityID,
		MountPath: req.MountPoint, Record: rec.ID, Objects: rec.Objects, LeaseMaxEnds: b.maxLeaseEnd(time.Now(), lease.MaxTTL)}
	if kind.scoped {
		d.Scopes = scopes
	}
	if ttl, _, err := framework.CalculateTTL(b.System(), 0, lease.TTL, 0, lease.MaxTTL, 0, time.Time{}); err == nil {
		d.LeaseExpires = time.Now().Add(ttl)
	}
	b.postAudit(sess, auditIssue, d)
}

// auditRenewed reports a renewal, with the expiry Vault gives the lease:
// the increment asked for, or the lease's ttl, within its max TTL.
func (b *datadogBackend) auditRenewed(ctx context.Context, req *logical.Request, lease *logical.Secret) {
	sess := b.auditSession(ctx, req.Storage)
	if sess == nil {
		return
	}
	d := auditDetailsOfLease(req.Secret)
	d.MountPath = req.MountPoint
	if ttl, _, err := framework.CalculateTTL(b.System(), req.Secret.Increment, lease.TTL, 0, lease.MaxTTL, 0, req.Secret.IssueTime); err == nil {
		d.LeaseExpires = time.Now().Add(ttl)
	}
	if !req.Secret.IssueTime.IsZero() {
		d.LeaseMaxEnds = b.maxLeaseEnd(req.Secret.IssueTime, lease.MaxTTL)
	}
	b.postAudit(sess, auditRenew, d)
}

// auditRevoked reports a lease whose keys are deleted: revoked or expired.
func (b *datadogBackend) auditRevoked(ctx context.Context, req *logical.Request) {
	sess := b.auditSession(ctx, req.Storage)
	if sess == nil {
		return
	}
	d := auditDetailsOfLease(req.Secret)
	d.MountPath = req.MountPoint
	if !req.Secret.IssueTime.IsZero() {
		d.LeaseMaxEnds = b.maxLeaseEnd(req.Secret.IssueTime, req.Secret.MaxTTL)
	}
	b.postAudit(sess, auditRevoke, d)
}

// auditEventBody is one event as the engine posts it.
type auditEventBody struct {
	Title, Text    string
	Tags           []string
	AlertType      string
	Priority       string
	AggregationKey string
	At             time.Time
}

// Limits of Datadog's events API, and of a tag.
const (
	maxEventTitle = 100 // Datadog's documented limit; longer titles are cut
	maxEventText  = 4000
	maxTagLength  = 200
)

var auditVerbs = map[string]struct{ title, alert, reason string }{
	auditIssue:  {"issued", "info", "issued by a creds request"},
	auditRenew:  {"renewed the lease of", "info", "lease renewed"},
	auditRevoke: {"deleted", "info", "the lease ended: revoked, or expired"},
	auditLeak:   {"deleted leaked", "error", "Datadog flagged the credential as leaked"},
	auditIdle:   {"deleted idle", "warning", "the credential was not used for longer than its role's idle_ttl"},
}

func (d auditDetails) event(kind string, now time.Time) auditEventBody {
	verb := auditVerbs[kind]
	reason := cmp.Or(d.Reason, verb.reason)
	what := "Datadog credential"
	if d.CredentialType != "" {
		what = "Datadog " + describeKind(d.CredentialType)
	}
	title := fmt.Sprintf("Vault %s %s of role %s", verb.title, what, d.Role)

	var text strings.Builder
	line := func(key, value string) {
		if value != "" {
			fmt.Fprintf(&text, "%s: %s\n", key, value)
		}
	}
	line("event", kind)
	line("reason", reason)
	line("role", d.Role)
	line("credential_type", d.CredentialType)
	line("vault_display_name", d.DisplayName)
	line("vault_entity_id", cmp.Or(d.EntityID, "none"))
	line("vault_mount", d.MountPath)
	line("lease_id", d.LeaseID)
	line("lease_record", d.Record)
	line("datadog_keys", describeObjects(d.Objects))
	if len(d.Scopes) > 0 {
		line("scopes", strings.Join(d.Scopes, ","))
	}
	if !d.LeaseExpires.IsZero() {
		line("lease_expires_at", d.LeaseExpires.UTC().Format(time.RFC3339))
	}
	if !d.LeaseMaxEnds.IsZero() {
		line("lease_max_expires_at", d.LeaseMaxEnds.UTC().Format(time.RFC3339))
	}

	tags := []string{"vault_event:" + kind, "vault_role:" + d.Role}
	if d.CredentialType != "" {
		tags = append(tags, "credential_type:"+d.CredentialType)
	}
	if d.EntityID != "" {
		tags = append(tags, "vault_entity_id:"+d.EntityID)
	}
	if d.MountPath != "" {
		tags = append(tags, "vault_mount:"+strings.TrimSuffix(d.MountPath, "/"))
	}
	for _, o := range d.Objects {
		if o.ID != "" {
			tags = append(tags, "datadog_key_id:"+o.ID)
		}
	}
	for i, tag := range tags {
		tags[i] = truncate(tag, maxTagLength)
	}
	priority := "normal"
	if kind == auditRenew {
		priority = "low" // the frequent, unremarkable one
	}
	return auditEventBody{
		Title:          truncate(title, maxEventTitle),
		Text:           truncate(text.String(), maxEventText),
		Tags:           tags,
		AlertType:      verb.alert,
		Priority:       priority,
		AggregationKey: truncate("vault-lease-"+d.Record, 100),
		At:             now,
	}
}

// truncate cuts s to at most n characters.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// Bounds of the background posting.
const (
	auditWorkers     = 4
	auditQueueLength = 1024
	// auditSendTimeout bounds one event's posting, its retries included.
	auditSendTimeout = 15 * time.Second
	// auditDrainTimeout bounds how long a stopping plugin posts what is
	// still queued.
	auditDrainTimeout = 5 * time.Second
)

// auditTrail posts events in the background and counts the outcomes.
type auditTrail struct {
	logger  hclog.Logger
	start   sync.Once
	queue   chan auditJob
	stopped chan struct{}
	workers sync.WaitGroup
	stop    sync.Once

	sent, failed atomic.Int64
}

// auditJob is an event to post: its text is written by the worker, off
// the request's path.
type auditJob struct {
	client  datadogAPI
	kind    string
	details auditDetails
	at      time.Time
}

func (t *auditTrail) post(logger hclog.Logger, job auditJob) {
	t.start.Do(func() {
		t.logger = logger
		t.queue = make(chan auditJob, auditQueueLength)
		t.stopped = make(chan struct{})
		for range auditWorkers {
			t.workers.Add(1)
			go t.work()
		}
	})
	select {
	case <-t.stopped:
		t.lost(job, "the plugin is stopping")
	default:
		select {
		case t.queue <- job:
		default:
			t.lost(job, fmt.Sprintf("%d events are already waiting to be posted", auditQueueLength))
		}
	}
}

func (t *auditTrail) work() {
	defer t.workers.Done()
	for {
		select {
		case job := <-t.queue:
			t.send(job, auditSendTimeout)
		case <-t.stopped:
			// Post what is queued, within the drain's time, then stop.
			deadline := time.Now().Add(auditDrainTimeout)
			for {
				select {
				case job := <-t.queue:
					if left := time.Until(deadline); left > 0 {
						t.send(job, min(left, auditSendTimeout))
					} else {
						t.lost(job, "the plugin stopped before it was posted")
					}
				default:
					return
				}
			}
		}
	}
}

func (t *auditTrail) send(job auditJob, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := job.client.SendEvent(ctx, job.details.event(job.kind, job.at)); err != nil {
		t.lost(job, err.Error())
		return
	}
	t.sent.Add(1)
}

func (t *auditTrail) lost(job auditJob, why string) {
	t.failed.Add(1)
	t.logger.Warn("could not post an audit event to Datadog", "event", job.kind, "role", job.details.Role,
		"record", job.details.Record, "objects", describeObjects(job.details.Objects), "error", why)
}

// close stops the workers once they have posted what is queued (within
// auditDrainTimeout); events reported after it are counted as failed.
func (t *auditTrail) close() {
	t.start.Do(func() { t.stopped = make(chan struct{}) }) // never started: nothing to drain
	t.stop.Do(func() { close(t.stopped) })
	t.workers.Wait()
	for {
		select {
		case job := <-t.queue: // queued while the workers were ending
			t.lost(job, "the plugin stopped before it was posted")
		default:
			return
		}
	}
}

// counts returns how many events were posted and how many were not, since
// the plugin started.
func (t *auditTrail) counts() (sent, failed int64) { return t.sent.Load(), t.failed.Load() }

// SendEvent posts an event through Datadog's v1 events API.
func (c *datadogClient) SendEvent(ctx context.Context, e auditEventBody) error {
	body := datadogV1.NewEventCreateRequest(e.Text, e.Title)
	body.SetTags(e.Tags)
	body.SetAlertType(datadogV1.EventAlertType(e.AlertType))
	body.SetPriority(datadogV1.EventPriority(e.Priority))
	body.SetAggregationKey(e.AggregationKey)
	body.SetSourceTypeName("vault")
	body.SetDateHappened(e.At.Unix())
	events := datadogV1.NewEventsApi(c.auth.Client)
	// A post that may have been applied is sent again: a duplicate event is
	// better than a missing one.
	return c.call(ctx, "event post", true, func(ctx context.Context) (*http.Response, error) {
		_, resp, err := events.CreateEvent(ctx, *body)
		return resp, err
	})
}

// withAuditConfig adds the trail's field to config's.
func withAuditConfig(fields map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	fields["audit_events"] = &framework.FieldSchema{
		Type: framework.TypeBool,
		Description: "Post a Datadog event (POST /api/v1/events) for every credential issued, renewed or deleted " +
			"(revoked, expired, leaked or idle), naming the role, the Vault display name and entity, the Datadog key's " +
			"id and name, the lease's expiry and the reason; never a secret. Needs api_key. Off by default.",
	}
	return fields
}

// auditConfigRead is what config read shows of the trail.
func (b *datadogBackend) auditConfigRead(cfg *datadogConfig) map[string]interface{} {
	sent, failed := b.trail.counts()
	return map[string]interface{}{
		"audit_events":        cfg.AuditEvents,
		"audit_events_sent":   sent,
		"audit_events_failed": failed,
	}
}

// auditConfigWrite applies the request's audit_events; it returns a message
// for a 400 when the configuration cannot post events.
func auditConfigWrite(cfg *datadogConfig, d *framework.FieldData) string {
	if v, ok := d.GetOk("audit_events"); ok {
		cfg.AuditEvents = v.(bool)
	}
	if cfg.AuditEvents && cfg.APIKey == "" {
		return "audit_events needs api_key: Datadog's events API (POST /api/v1/events) takes an API key, not an access token"
	}
	return ""
}
