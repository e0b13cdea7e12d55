package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// datadogObject is one thing the engine created in Datadog for a lease. Every
// credential kind is a list of these, so issuing, renewing, revoking and
// rolling back share one mechanism. It records where the object lives, so
// that it is deleted there whatever the configuration says later.
type datadogObject struct {
	Kind      string      `json:"kind"`
	ID        string      `json:"id,omitempty"` // empty until Datadog has answered the create
	Name      string      `json:"name"`         // unique: clean-up may find the object by it
	Owner     string      `json:"owner"`        // user or service account that owns it (for API keys, that created it)
	Home      datadogHome `json:"home"`
	ExpiresAt *time.Time  `json:"expires_at,omitempty"` // native expiry of tokens
}

// datadogHome is the organisation an object lives in, and the site or URL
// through which the engine reached it.
type datadogHome struct {
	OrgID  string `json:"org_id"`
	Site   string `json:"site"`
	APIURL string `json:"api_url,omitempty"`
}

func (h datadogHome) String() string {
	if h.APIURL != "" {
		return fmt.Sprintf("organisation %s at %s", h.OrgID, h.APIURL)
	}
	return fmt.Sprintf("organisation %s at %s", h.OrgID, h.Site)
}

// secretType is the Vault secret type of leases whose main object is of kind.
func secretType(kind string) string { return "datadog_" + kind }

// credentialSecrets returns one framework.Secret per credential kind, all
// renewed and revoked by the same mechanism.
func credentialSecrets(b *datadogBackend) []*framework.Secret {
	var secrets []*framework.Secret
	for _, name := range credentialTypeNames() {
		kind := credentialKinds[name]
		secrets = append(secrets, &framework.Secret{
			Type:   secretType(kind.name),
			Fields: kind.responseFields(),
			Renew:  b.renewCredential,
			Revoke: b.revokeCredential,
		})
	}
	return secrets
}

// responseFields documents what a creds read of the kind returns; the
// creds path's response schema is their union over the kinds.
func (k credentialKind) responseFields() map[string]*framework.FieldSchema {
	str := func(desc string) *framework.FieldSchema {
		return &framework.FieldSchema{Type: framework.TypeString, Description: desc}
	}
	always := func(desc string) *framework.FieldSchema {
		return &framework.FieldSchema{Type: framework.TypeString, Required: true, Description: desc}
	}
	fields := map[string]*framework.FieldSchema{
		"name": always("Name of the credential in Datadog: the role's name_template rendered (by default " +
			"vault-<role>-<display name>-<unix time>), ended with the mount's marker and the lease's own id."),
		"site":    always("Datadog site (DD_SITE)."),
		"api_url": always("Base URL of the Datadog API the credential belongs to."),
	}
	switch {
	case k.token:
		fields["access_token"] = str("Datadog access token, sent as Authorization: Bearer <token>, or as DD-APPLICATION-KEY (DD_APP_KEY) with no API key; " +
			"personal_access_token and service_access_token.")
		fields["access_token_id"] = str("ID of the access token in Datadog; personal_access_token and service_access_token.")
		fields["expires_at"] = &framework.FieldSchema{Type: framework.TypeTime,
			Description: "When Datadog itself expires the token (RFC 3339); personal_access_token and service_access_token."}
	case k.withAPIKey:
		fields["application_key"] = str("Datadog application key (DD_APP_KEY); application_key and service_account_application_key.")
		fields["application_key_id"] = str("ID of the application key in Datadog; application_key and service_account_application_key.")
	}
	if k.withAPIKey || !k.scoped {
		fields["api_key"] = str("Datadog API key (DD_API_KEY): with api_key_mode shared (the default) the role's key of the " +
			"current window, held by every lease of the window; with dynamic a new one of the lease's own; the engine's own " +
			"with api_key_mode static; absent with api_key_mode none.")
		fields["api_key_id"] = str("ID of the API key in Datadog: api_key roles, and application key roles with api_key_mode shared or dynamic.")
	}
	if k.scoped {
		fields["scopes"] = &framework.FieldSchema{Type: framework.TypeCommaStringSlice,
			Description: "Datadog permissions the credential is limited to (empty: unscoped); all types but api_key."}
	}
	if k.serviceAccount {
		fields["service_account_id"] = str("Datadog service account that owns the credential (with service_account_ids, the one the request took); " +
			"service_account_application_key and service_access_token.")
	}
	return fields
}

// describeObjects names objects for an error message, without secrets.
func describeObjects(objects []datadogObject) string {
	parts := make([]string, len(objects))
	for i, o := range objects {
		if o.ID == "" { // its create was never answered
			parts[i] = fmt.Sprintf("%s named %s", describeKind(o.Kind), o.Name)
			continue
		}
		parts[i] = fmt.Sprintf("%s %s (%s)", describeKind(o.Kind), o.ID, o.Name)
	}
	return strings.Join(parts, ", ")
}

func describeKind(kind string) string {
	return strings.ReplaceAll(strings.Replace(kind, "api_key", "API key", 1), "_", " ")
}

// inParallel runs f(0) … f(n-1) at once and waits for them all: the
// Datadog calls of one request that do not depend on each other cost one
// round trip, not one each. Datadog's rate limits are kept by the client,
// which paces concurrent calls as it does sequential ones.
func inParallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// readStates reads what Datadog says of each object, all at once.
func readStates(ctx context.Context, client datadogAPI, objects []datadogObject) ([]objectState, []error) {
	states := make([]objectState, len(objects))
	errs := make([]error, len(objects))
	inParallel(len(objects), func(i int) { states[i], errs[i] = client.State(ctx, objects[i]) })
	return states, errs
}

// decodeObjects returns the Datadog objects the lease owns: none for an
// api_key lease that holds its role's shared API key.
func decodeObjects(secret *logical.Secret) ([]datadogObject, error) {
	var objects []datadogObject
	if err := mapToStruct(secret.InternalData["objects"], &objects); err != nil || len(objects) == 0 && sharedKeyID(secret) == "" {
		return nil, errors.New("the lease does not record which Datadog keys it owns")
	}
	return objects, nil
}

// sharedKeyID is the record of the shared API key the lease holds, or "".
func sharedKeyID(secret *logical.Secret) string {
	id, _ := secret.InternalData["shared_api_key"].(string)
	return id
}

// mapToStruct decodes what Vault hands back from storage (JSON decoded into
// maps and slices) into a typed value.
func mapToStruct(in, out interface{}) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// maxClockSkew is how far Vault's clock may be ahead of Datadog's when a
// name look-up checks that an object was created after its WAL entry.
const maxClockSkew = 2 * time.Minute

// deleteObjects deletes each object where it lives, by ID when Datadog
// returned one and otherwise by its exact name, owner and creation after
// createdAfter, all at once (a lease's keys are independent: revoking one
// costs one Datadog round trip). Objects already gone count as deleted, so
// it can run any number of times: a retry deletes only what is left.
func (b *datadogBackend) deleteObjects(ctx context.Context, sess *session, objects []datadogObject, createdAfter time.Time) error {
	errs := make([]error, len(objects))
	inParallel(len(objects), func(i int) { errs[i] = b.deleteObject(ctx, sess, objects[i], createdAfter) })
	return errors.Join(errs...)
}

func (b *datadogBackend) deleteObject(ctx context.Context, sess *session, o datadogObject, createdAfter time.Time) error {
	if err := sess.cfg.reaches(o); err != nil {
		return err
	}
	ids := []string{o.ID}
	if o.ID == "" {
		found, err := sess.client.FindByName(ctx, o, createdAfter)
		if err != nil {
			return fmt.Errorf("error looking up Datadog %s %q: %w", describeKind(o.Kind), o.Name, err)
		}
		ids = found
	}
	var errs []error
	for _, id := range ids {
		o.ID = id
		if err := sess.client.Delete(ctx, o); err != nil && !errors.Is(err, errNotFound) {
			errs = append(errs, fmt.Errorf("error deleting Datadog %s %s (%s): %w%s", describeKind(o.Kind), id, o.Name, err, refusalHint(err, o, sess.cfg)))
		}
	}
	return errors.Join(errs...)
}

// refusalHint explains a 401 or 403 to a deletion: Datadog refused the
// engine's own credentials, which an operator must fix in config.
func refusalHint(err error, o datadogObject, cfg *datadogConfig) string {
	if !refused(err) || errors.Is(err, errNotVisible) {
		return ""
	}
	return fmt.Sprintf(" (Datadog refused the engine's own keys, config's api_key ...%s and app_key ...%s of user %s: they were revoked, "+
		"or lack %s; the lease is kept, and its revocation succeeds once config holds working keys)",
		last4(cfg.APIKey), last4(cfg.AppKey), cfg.OwnerID, deletePermission(o, cfg.OwnerID))
}

func (b *datadogBackend) revokeCredential(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	objects, err := decodeObjects(req.Secret)
	if err != nil {
		return nil, err
	}
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, fmt.Errorf("cannot delete Datadog %s: %w", describeObjects(objects), errNotConfigured)
	}
	// The lease lets go of its shared API key (deleting it when no other
	// lease holds it) while its own keys are deleted: one Datadog round
	// trip. An error makes Vault keep the lease and retry the revocation
	// later, which deletes what is left.
	id, _ := req.Secret.InternalData["record"].(string)
	var deleteErr, releaseErr error
	inParallel(2, func(i int) {
		switch {
		case i == 0:
			deleteErr = b.deleteObjects(ctx, sess, objects, time.Time{})
		case id != "" && sharedKeyID(req.Secret) != "":
			releaseErr = b.releaseSharedKey(ctx, req.Storage, id)
		}
	})
	if err := errors.Join(deleteErr, releaseErr); err != nil {
		return nil, err
	}
	if id != "" {
		if err := b.deleteRecord(ctx, req.Storage, id); err != nil {
			return nil, fmt.Errorf("the lease's own Datadog keys are deleted, but not the engine's record of them: %w", err)
		}
	}
	b.Logger().Debug("revoked Datadog credentials", "record", id, "objects", describeObjects(objects))
	b.auditRevoked(ctx, req)
	return nil, nil
}

func (b *datadogBackend) renewCredential(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if err := b.refuseKilled(ctx, req); err != nil {
		return nil, err
	}
	roleName, _ := req.Secret.InternalData["role"].(string)
	role, err := b.cachedRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return nil, renewRefused("role %q no longer exists; request new credentials from an existing role", roleName)
	}
	objects, err := decodeObjects(req.Secret)
	if err != nil {
		return nil, err
	}
	var issued roleBinding
	if raw, ok := req.Secret.InternalData["binding"]; ok {
		if err := mapToStruct(raw, &issued); err != nil {
			return nil, err
		}
		if msg := issued.mismatch(role.binding()); msg != "" {
			return nil, renewRefused("role %q %s; request new credentials from it", roleName, msg)
		}
	}
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, renewRefused("%s", errNotConfigured)
	}
	if kind, known := credentialKinds[issued.CredentialType]; known {
		if msg := sess.cfg.scopesProblem(kind, issued.Scopes); msg != "" {
			return nil, renewRefused("the credential's %s", msg)
		}
	}
	checked := objects // and the shared API key the lease holds
	if id := sharedKeyID(req.Secret); id != "" {
		k, err := b.sharedKeyOf(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if k == nil {
			return nil, renewRefused("the role's shared API key this lease holds was deleted; request new credentials")
		}
		if k.retired { // killed by the watch, perhaps: say why
			if rec, err := getRecord(ctx, req.Storage, id); err == nil && rec != nil && rec.Killed != nil {
				return nil, renewRefused("the role's shared API key this lease holds: %s", rec.Killed.refusal())
			}
		}
		checked = append(slices.Clone(objects), k.object())
	}
	for _, o := range checked {
		if err := sess.cfg.reaches(o); err != nil {
			return nil, renewRefused("%s", err)
		}
	}
	states, errs := readStates(ctx, sess.client, checked)
	for i, err := range errs {
		o := checked[i]
		if errors.Is(err, errNotFound) {
			return nil, renewRefused("Datadog %s %s (%s) was deleted outside Vault; request new credentials", describeKind(o.Kind), o.ID, o.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("error checking Datadog %s %s before renewal: %w", describeKind(o.Kind), o.ID, err)
		}
	}
	// A leaked or idle credential dies now rather than living on. A shared
	// API key is judged on its own by the watch: other leases hold it.
	if err := b.checkOnRenew(ctx, req, sess, role, objects, states[:len(objects)]); err != nil {
		return nil, err
	}

	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = leaseTTL(role, narrowedTTL(req.Secret))
	resp.Secret.MaxTTL = b.leaseMaxTTL(role, objects, req.Secret.IssueTime)
	// The lease never outlives what its record promised at issue, even if
	// the role's max_ttl grew since: tidy relies on it.
	if ends, err := time.Parse(time.RFC3339Nano, fmt.Sprint(req.Secret.InternalData["lease_ends"])); err == nil {
		if limit := ends.Sub(req.Secret.IssueTime); resp.Secret.MaxTTL == 0 || resp.Secret.MaxTTL > limit {
			resp.Secret.MaxTTL = limit
		}
	}
	// Nor a token root's end, which the lease may predate (token_root.go).
	if end := sess.cfg.leaseEndLimit(); !end.IsZero() {
		if limit := end.Sub(req.Secret.IssueTime); resp.Secret.MaxTTL == 0 || resp.Secret.MaxTTL > limit {
			resp.Secret.MaxTTL = limit
		}
	}
	if id, _ := req.Secret.InternalData["record"].(string); id != "" {
		ttl := resp.Secret.TTL
		if ttl <= 0 {
			ttl = b.System().DefaultLeaseTTL()
		}
		if untilMax := req.Secret.IssueTime.Add(resp.Secret.MaxTTL).Sub(time.Now()); resp.Secret.MaxTTL > 0 && ttl > untilMax {
			ttl = untilMax
		}
		if err := b.moveExpiry(ctx, req.Storage, id, ttl); err != nil {
			return nil, err
		}
	}
	b.auditRenewed(ctx, req, resp.Secret)
	return resp, nil
}

// roleBinding is what a lease was issued under. A lease is renewed only
// while its role still issues the same: narrowing a role's scopes must not
// leave wider credentials alive for as long as they keep being renewed.
type roleBinding struct {
	CredentialType   string   `json:"credential_type"`
	ServiceAccountID string   `json:"service_account_id,omitempty"`
	Scopes           []string `json:"scopes"` // sorted; empty for unscoped keys
	// Narrowed: the request asked for these scopes, fewer than the role's;
	// the lease renews while the role still grants them all.
	Narrowed bool     `json:"narrowed,omitempty"`
	pool     []string // the role's service_account_ids; not in the lease
}

func (r *datadogRole) binding() roleBinding {
	scopes := slices.Clone(r.Scopes)
	slices.Sort(scopes)
	return roleBinding{CredentialType: r.CredentialType, ServiceAccountID: r.ServiceAccountID, Scopes: scopes, pool: r.ServiceAccountIDs}
}

// mismatch says how the role now differs from what the lease holds, or "".
func (issued roleBinding) mismatch(now roleBinding) string {
	switch {
	case issued.CredentialType != now.CredentialType:
		return fmt.Sprintf("now issues credential_type %s; this lease holds a %s", now.CredentialType, describeKind(issued.CredentialType))
	case !now.issuesFor(issued.ServiceAccountID):
		return fmt.Sprintf("now issues credentials of %s; this lease's belong to %s", now.describeServiceAccounts(), issued.ServiceAccountID)
	case issued.Narrowed:
		if uncovered := notCovered(issued.Scopes, now.Scopes); len(uncovered) > 0 {
			return fmt.Sprintf("no longer grants scopes [%s] (it grants [%s]); this lease's credential was narrowed to [%s]",
				strings.Join(uncovered, ","), strings.Join(now.Scopes, ","), strings.Join(issued.Scopes, ","))
		}
	case !slices.Equal(issued.Scopes, now.Scopes):
		return fmt.Sprintf("now grants scopes [%s]; this lease's credential has [%s]", strings.Join(now.Scopes, ","), strings.Join(issued.Scopes, ","))
	}
	return ""
}

// notCovered lists the scopes a role granting granted (every permission
// when empty: an unscoped role) does not cover.
func notCovered(scopes, granted []string) []string {
	if len(granted) == 0 {
		return nil
	}
	var out []string
	for _, s := range scopes {
		if !slices.Contains(granted, s) {
			out = append(out, s)
		}
	}
	return out
}

// renewRefused is a renewal the caller cannot have: a 400 carried as an
// error, because Vault prints a renew's error response as a struct dump.
func renewRefused(format string, args ...interface{}) error {
	return logical.CodedError(http.StatusBadRequest, "cannot renew: "+fmt.Sprintf(format, args...))
}

// leaseTerms are what a creds request asks of its lease: the TTL it
// returns, and the shared API key's end, which the lease may not outlive.
// maxTTL is set by settleLease.
type leaseTerms struct {
	// shared waits for the role's shared API key the lease is to hold.
	shared  func() (*sharedKey, *logical.Response, error)
	role    *datadogRole
	ttl     time.Duration // 0: the mount's default
	keyEnds time.Time     // zero: no shared key
	maxTTL  time.Duration
	// root is config when its root is an access token, whose end no lease
	// may outlive (token_root.go); capped then says why maxTTL is short.
	root   *datadogConfig
	capped string
}

// settleLease fixes a new lease's bounds from issued, the time its keys
// exist (not the request's start: a create may wait minutes on a rate
// limit, and Vault starts the lease after it). LeaseEnds is the latest
// it can end, renewals included: its max TTL, capped by the mount's, a
// token's expiry and a shared key's end, plus a few seconds for Vault to
// register the lease. Expires is when it ends unless renewed.
func (b *datadogBackend) settleLease(rec *credentialRecord, issued time.Time) {
	terms := rec.terms
	if terms == nil {
		return
	}
	maxTTL := b.leaseMaxTTL(terms.role, rec.Objects, issued)
	if !terms.keyEnds.IsZero() {
		if untilKeyEnds := terms.keyEnds.Add(-leaseRegistrationGrace).Sub(issued); maxTTL == 0 || maxTTL > untilKeyEnds {
			maxTTL = untilKeyEnds
		}
	}
	if terms.root != nil {
		maxTTL, terms.capped = terms.root.capLease(maxTTL, b.System().MaxLeaseTTL(), issued)
	}
	terms.maxTTL = maxTTL
	rec.LeaseEnds = b.maxLeaseEnd(issued, maxTTL).Add(leaseRegistrationGrace).UTC()
	rec.Expires = b.expiry(issued, terms.ttl, rec.LeaseEnds)
}

// expiry is when a lease given ttl at now ends unless renewed, with the
// grace Vault takes to register it, never past ends.
func (b *datadogBackend) expiry(now time.Time, ttl time.Duration, ends time.Time) *time.Time {
	if ttl <= 0 {
		ttl = b.System().DefaultLeaseTTL()
	}
	at := now.Add(ttl + leaseRegistrationGrace).UTC()
	if at.After(ends) {
		at = ends
	}
	return &at
}

// maxLeaseEnd is the latest a lease issued at issued with maxTTL can end:
// Vault holds it to the mount's max lease TTL (and uses that when maxTTL
// is 0).
func (b *datadogBackend) maxLeaseEnd(issued time.Time, maxTTL time.Duration) time.Time {
	if mount := b.System().MaxLeaseTTL(); maxTTL <= 0 || maxTTL > mount {
		maxTTL = mount
	}
	return issued.Add(maxTTL)
}

// leaseRegistrationGrace covers the time between the engine's answer and
// Vault's record of the lease.
const leaseRegistrationGrace = 10 * time.Second

// leaseMaxTTL is the role's max TTL, shortened so that the lease never
// outlives a token's native expiry: a lease must not promise a credential
// that Datadog has already killed.
func (b *datadogBackend) leaseMaxTTL(role *datadogRole, objects []datadogObject, issued time.Time) time.Duration {
	maxTTL := role.MaxTTL
	for _, o := range objects {
		if o.ExpiresAt == nil {
			continue
		}
		untilExpiry := o.ExpiresAt.Sub(issued)
		if maxTTL == 0 {
			maxTTL = b.System().MaxLeaseTTL()
		}
		maxTTL = min(maxTTL, untilExpiry)
	}
	return maxTTL
}
