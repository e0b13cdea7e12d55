package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathCreds(b *datadogBackend) *framework.Path {
	return &framework.Path{
		Pattern: "creds/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "generate",
			OperationSuffix: "credentials",
		},
		Fields: withNarrowing(map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeLowerCaseString,
				Description: "Name of the role to issue credentials for.",
				Required:    true,
			},
		}),
		// Both write the request's record and create keys in Datadog: only
		// the active node of the primary does that.
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:                    b.pathCredsRead,
				Summary:                     "Issue a new Datadog credential of the role, with a lease.",
				Responses:                   credsResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathCredsRead,
				Summary:                     "Issue a new Datadog credential of the role, narrowed to fewer scopes or a shorter lease.",
				Responses:                   credsResponses(),
				DisplayAttrs:                &framework.DisplayAttributes{OperationSuffix: "credentials-with-parameters"},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: pathCredsHelpDesc,
	}
}

func (b *datadogBackend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.credsLock.RLock()
	defer b.credsLock.RUnlock()
	roleName := d.Get("name").(string)
	role, err := b.cachedRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("unknown role %q: write roles/%s first", roleName, roleName), nil
	}
	sess, err := b.session(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return logical.ErrorResponse(errNotConfigured.Error()), nil
	}
	asked, msg, err := b.narrow(ctx, req.Storage, d, roleName, role)
	if msg != "" || err != nil {
		if err != nil {
			return nil, err
		}
		return logical.ErrorResponse(msg), nil
	}
	cfg, kind := sess.cfg, role.kind()
	if msg := cfg.scopesProblem(kind, asked.scopes); msg != "" {
		return logical.ErrorResponse("role %q cannot issue credentials: its %s; narrow the role or config's allowed_scopes", roleName, msg), nil
	}
	// Datadog's rules for a token root, checked before anything is made
	// (token_root.go); the role may predate the root.
	if msg := cmp.Or(cfg.containmentProblem(kind, asked.scopes), cfg.rootEndProblem(time.Now())); msg != "" {
		return logical.ErrorResponse("role %q cannot issue credentials, and nothing was created in Datadog: %s", roleName, msg), nil
	}
	if kind.withAPIKey && role.APIKeyMode == apiKeyModeStatic && cfg.APIKey == "" {
		return logical.ErrorResponse("role %q has api_key_mode static, but config has no api_key to share: write config api_key, or use api_key_mode dynamic", roleName), nil
	}

	// The request's Datadog calls get a bounded time, so that its WAL entry
	// can be rolled back soon after if it never ends (a crash).
	ctx, cancel := context.WithTimeout(ctx, cfg.credsBudget())
	defer cancel()
	now := time.Now()
	rec := &credentialRecord{ID: newRecordID(), Role: roleName, CreatedAt: now.UTC(),
		RequestEnds: now.Add(cfg.credsBudget() + cfg.cleanupBudget() + requestEndMargin).UTC(),
		DisplayName: req.DisplayName, EntityID: req.EntityID}
	name, err := credentialName(role.nameTemplate(), nameData{RoleName: roleName, DisplayName: req.DisplayName, EntityID: req.EntityID}, b.marker+rec.ID)
	if err != nil {
		return nil, fmt.Errorf("error generating the credential name from role %q's name_template: %w", roleName, err)
	}
	main := datadogObject{Kind: kind.name, Name: name, Owner: cfg.OwnerID, Home: cfg.home()}
	if kind.serviceAccount {
		main.Owner = role.ServiceAccountID
	}
	if kind.token {
		maxLease := role.MaxTTL
		if maxLease == 0 || maxLease > b.System().MaxLeaseTTL() {
			maxLease = b.System().MaxLeaseTTL()
		}
		expiresAt := cfg.capExpiry(kind.tokenExpiry(now, maxLease))
		main.ExpiresAt = &expiresAt
	}
	rec.Objects = []datadogObject{main}
	switch {
	case role.sharesAPIKey() && kind.name == kindAPIKey:
		rec.Objects = nil // the lease's credential is the role's shared API key
	case kind.withAPIKey && role.ownsAPIKey():
		rec.Objects = append(rec.Objects, datadogObject{Kind: kindAPIKey, Name: name, Owner: cfg.OwnerID, Home: cfg.home()})
	}
	if role.ownsAPIKey() {
		if resp, err := b.checkAPIKeyRoom(ctx, sess, roleName); resp != nil || err != nil {
			return resp, err
		}
	}
	rec.terms = &leaseTerms{role: role, ttl: leaseTTL(role, asked.ttl)}
	if cfg.tokenRoot() {
		rec.terms.root = cfg // no lease outlives its root (token_root.go)
	}
	// The role's shared API key is got (made, when its window has none)
	// while the lease's own keys are created: one Datadog round trip. The
	// record names it once every key exists (joinShared); a crash before
	// leaves a key no record holds, which the sweep deletes.
	var shared *sharedKey
	var sharedResp *logical.Response
	var sharedErr error
	acquired := make(chan struct{})
	if role.sharesAPIKey() {
		go func() {
			defer close(acquired)
			shared, sharedResp, sharedErr = b.acquireSharedKey(ctx, req.Storage, sess, roleName, role, rec.ID)
		}()
		rec.terms.shared = func() (*sharedKey, *logical.Response, error) {
			<-acquired
			return shared, sharedResp, sharedErr
		}
	} else {
		close(acquired)
	}

	secrets, resp, err := b.createForOwner(ctx, req.Storage, sess, role, rec, asked.scopes)
	if resp != nil || err != nil {
		<-acquired
		if role.sharesAPIKey() {
			// Whatever the failed request left, it holds no key: let go,
			// deleting the key when no lease holds it.
			cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.cleanupBudget())
			defer cancel()
			if rerr := b.releaseSharedKey(cleanupCtx, req.Storage, rec.ID); rerr != nil {
				b.Logger().Warn("a failed creds request could not let go of its role's shared API key; the sweep deletes it once no lease holds it",
					"record", rec.ID, "role", roleName, "error", rerr)
			}
		}
		return resp, err
	}

	owner := main.Owner // a pool's request took the service account it created the key for
	if len(rec.Objects) > 0 {
		owner = rec.Objects[0].Owner
	}
	data := map[string]interface{}{
		"name":    name,
		"site":    cfg.Site,
		"api_url": cfg.baseURL(),
	}
	for i, o := range rec.Objects {
		fields := objectFields[o.Kind]
		data[fields.secret], data[fields.id] = secrets[i], o.ID
		if o.ExpiresAt != nil {
			data["expires_at"] = o.ExpiresAt.Format(time.RFC3339)
		}
	}
	if kind.scoped {
		data["scopes"] = asked.scopes
	}
	if kind.serviceAccount {
		data["service_account_id"] = owner
	}
	if kind.withAPIKey && role.APIKeyMode == apiKeyModeStatic {
		data["api_key"] = cfg.APIKey
	}
	if shared != nil {
		data["api_key"], data["api_key_id"] = shared.secret, shared.object().ID
	}
	internal := map[string]interface{}{
		"role":       roleName,
		"record":     rec.ID,
		"objects":    rec.Objects,
		"binding":    asked.binding(role.bindingFor(owner)),
		"lease_ends": rec.LeaseEnds.Format(time.RFC3339Nano),
		// For the audit events of its renewals and revocation.
		"display_name": req.DisplayName,
		"entity_id":    req.EntityID,
	}
	if asked.ttl > 0 {
		internal["ttl"] = int64(asked.ttl.Seconds())
	}
	if shared != nil {
		internal["shared_api_key"] = shared.rec.ID
	}
	resp = b.Secret(secretType(kind.name)).Response(data, internal)
	resp.Secret.TTL, resp.Secret.MaxTTL = rec.terms.ttl, rec.terms.maxTTL
	if rec.terms.capped != "" {
		resp.AddWarning(rec.terms.capped)
	}
	b.auditIssued(ctx, req, rec, kind, asked.scopes, resp.Secret)
	return resp, nil
}

// createObjects creates the record's objects, all at once (an application
// key and its API key are independent: a request costs one Datadog round
// trip, not two), filling in their IDs and returning their secrets. The
// record, naming every object, is stored first, as the request's WAL
// entry, and stored again as the lease's once every object exists. If a
// create fails, what was created is deleted now, and a create whose answer
// was lost is looked up by name; what cannot be deleted (or may yet appear)
// stays in the WAL entry for the rollback, so no key is ever left behind
// untracked.
func (b *datadogBackend) createObjects(ctx context.Context, s logical.Storage, sess *session, rec *credentialRecord, scopes []string) ([]string, *logical.Response, error) {
	if err := putRecord(ctx, s, rec); err != nil {
		return nil, nil, fmt.Errorf("error writing the write-ahead log before creating Datadog keys: %w", err)
	}

	created := make([]createdObject, len(rec.Objects))
	errs := make([]error, len(rec.Objects))
	inParallel(len(rec.Objects), func(i int) {
		created[i], errs[i] = b.createObject(ctx, sess.client, &rec.Objects[i], scopes, sess.cfg.rootEnd())
	})
	failed, mayExist := -1, []int(nil)
	secrets := make([]string, len(rec.Objects))
	for i, err := range errs {
		if err != nil {
			if failed < 0 {
				failed = i
			}
			if ambiguous(err) {
				mayExist = append(mayExist, i)
			}
			continue
		}
		rec.Objects[i].ID = created[i].ID
		if created[i].ExpiresAt != nil {
			rec.Objects[i].ExpiresAt = created[i].ExpiresAt
		}
		secrets[i] = created[i].Secret
	}
	if failed >= 0 {
		b.abandon(ctx, s, sess, rec, mayExist)
		resp, err := createFailed(rec.Objects[failed].Kind, errs[failed], sess.cfg.tokenRoot())
		return nil, resp, err
	}

	if resp, err := b.joinShared(rec); resp != nil || err != nil {
		b.abandon(ctx, s, sess, rec, nil)
		return nil, resp, err
	}
	rec.Issued = true
	b.settleLease(rec, time.Now())
	if err := putRecord(ctx, s, rec); err != nil {
		// The stored record still says the request is in flight, so the
		// rollback will delete the keys; no lease may promise them.
		b.abandon(ctx, s, sess, rec, nil)
		return nil, nil, fmt.Errorf("error recording the new Datadog keys (they are being deleted): %w", err)
	}
	b.knownIssued(rec.ID)
	b.Logger().Debug("issued Datadog credentials", "record", rec.ID, "role", rec.Role, "objects", describeObjects(rec.Objects),
		"lease_ends", rec.LeaseEnds.Format(time.RFC3339))
	return secrets, nil, nil
}

// abandon deletes what a failed creds request created: the objects Datadog
// returned an ID for, by it, and those whose create failed in a way that
// may have been applied anyway (mayExist, indices into rec.Objects) by
// their name. The WAL entry is removed only when nothing can be left in
// Datadog; otherwise it is kept, with the IDs known so far, and the
// rollback looks again once the request is surely over (Datadog may apply
// a create after answering 5xx).
func (b *datadogBackend) abandon(ctx context.Context, s logical.Storage, sess *session, rec *credentialRecord, mayExist []int) {
	// The request's own context may be what failed: clean up on a fresh
	// one, bounded like a request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sess.cfg.cleanupBudget())
	defer cancel()
	rec.Issued = false

	var created []datadogObject
	for _, o := range rec.Objects {
		if o.ID != "" {
			created = append(created, o)
		}
	}
	var mu sync.Mutex
	settled := true
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := b.deleteObjects(ctx, sess, created, time.Time{}); err != nil {
			fail(err)
		}
	}()
	for _, i := range mayExist {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &rec.Objects[i]
			ids, err := sess.client.FindByName(ctx, *o, rec.CreatedAt.Add(-maxClockSkew))
			switch {
			case err != nil:
				fail(fmt.Errorf("error looking up Datadog %s %q: %w", describeKind(o.Kind), o.Name, err))
			case len(ids) == 0:
				mu.Lock()
				settled = false // not there yet: Datadog may still apply the create
				mu.Unlock()
			default:
				found := make([]datadogObject, len(ids))
				for k, id := range ids {
					found[k] = *o
					found[k].ID = id
				}
				if len(ids) == 1 {
					o.ID = ids[0]
				}
				if err := b.deleteObjects(ctx, sess, found, time.Time{}); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()

	if settled && len(errs) == 0 {
		if err := b.dropRecord(ctx, s, rec.ID); err != nil {
			b.Logger().Warn("the keys of a failed creds request are deleted, but not its write-ahead log entry; the rollback will remove it", "record", rec.ID, "error", err)
		}
		return
	}
	if err := putRecord(ctx, s, rec); err != nil {
		b.Logger().Error("error recording the Datadog IDs of a failed creds request; the rollback will look its objects up by name", "record", rec.ID, "error", err)
	}
	// A failed write marking it issued may have been applied, and a
	// rollback may have read it so: the rollback must look at it again.
	b.forgetIssued(rec.ID)
	args := []interface{}{"record", rec.ID, "role", rec.Role, "objects", describeObjects(rec.Objects)}
	if err := errors.Join(errs...); err != nil {
		args = append(args, "error", err)
	}
	b.Logger().Warn("a failed creds request may have left Datadog objects; its write-ahead log entry stays for the rollback", args...)
}

// createObject creates one object. Datadog sets no minimum expiry for
// service access tokens in its specification; should it refuse a short one,
// the token is made once more to expire 24 h ahead (the lease still revokes
// it early), unless that is past rootEnd (a token root's end: Datadog would
// refuse it too).
func (b *datadogBackend) createObject(ctx context.Context, client datadogAPI, o *datadogObject, scopes []string, rootEnd time.Time) (createdObject, error) {
	created, err := client.Create(ctx, *o, scopes)
	later := time.Now().Add(24*time.Hour + expiryGrace).UTC().Truncate(time.Second)
	if o.Kind == kindServiceAccessToken && o.ExpiresAt != nil && httpStatus(err) == http.StatusBadRequest &&
		time.Until(*o.ExpiresAt) < 24*time.Hour && (rootEnd.IsZero() || !later.After(rootEnd)) {
		b.Logger().Warn("Datadog refused the service access token's expiry; retrying with an expiry 24 h ahead",
			"name", o.Name, "expires_at", o.ExpiresAt.Format(time.RFC3339), "error", err)
		o.ExpiresAt = &later
		created, err = client.Create(ctx, *o, scopes)
	}
	return created, err
}

// createFailed turns Datadog's refusals that an operator can act on into a
// 400 answer; other failures are internal errors. tokenRoot: the engine
// acts with an access token, whose containment rules Datadog may have
// applied in a way the engine could not foresee.
func createFailed(kind string, err error, tokenRoot bool) (*logical.Response, error) {
	switch httpStatus(err) {
	case http.StatusBadRequest:
		if kind == kindAPIKey {
			return logical.ErrorResponse("Datadog refused to create the API key (%v); an organisation holds at most as many API keys as its cap "+
				"(meta.max_allowed of GET /api/v2/api_keys, 50 by default): use api_key_mode shared, revoke unused leases, or delete unused API keys", err), nil
		}
		if limitReached(err) {
			return logical.ErrorResponse("Datadog refused to create the %s: its owner has reached Datadog's limit of 1000 application keys per user "+
				"(meta.max_allowed_per_user); revoke unused leases or delete unused keys of that owner (%v)", describeKind(kind), err), nil
		}
		if k := credentialKinds[kind]; k.token {
			return logical.ErrorResponse("Datadog refused to create the %s (%v); Datadog expires a %s between %s and %d days after creation: "+
				"check the role's max_ttl and the mount's max lease TTL", describeKind(kind), err, describeKind(kind), expiryFloor(k), int(k.maxExpiry.Hours()/24)), nil
		}
		return logical.ErrorResponse("Datadog refused to create the %s: %v", describeKind(kind), err), nil
	case http.StatusForbidden:
		if tokenRoot {
			return logical.ErrorResponse("Datadog refused to let the engine's root access token create the %s (%v): the root lacks the "+
				"permission, or the credential would break Datadog's rules for access tokens (no application keys; tokens only within the "+
				"root's own scopes and expiry); change the role, or write config a root that may", describeKind(kind), err), nil
		}
		return logical.ErrorResponse("the configured Datadog identity may not create %ss (%v); grant it the permission or change config", describeKind(kind), err), nil
	case http.StatusTooManyRequests:
		return nil, logical.CodedError(http.StatusTooManyRequests, fmt.Sprintf("no %s was created: %v; retry then", describeKind(kind), err))
	}
	return nil, fmt.Errorf("error creating Datadog %s: %w", describeKind(kind), err)
}

func expiryFloor(k credentialKind) string {
	if k.minExpiry == 0 {
		return "any time"
	}
	return fmt.Sprintf("%d hours", int(k.minExpiry.Hours()))
}

// limitReached reports whether Datadog refused a create because the owner
// holds as many keys as it allows.
func limitReached(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	for _, m := range ae.Messages {
		m = strings.ToLower(m)
		if strings.Contains(m, "limit") || strings.Contains(m, "more than") || strings.Contains(m, "maximum") {
			return true
		}
	}
	return false
}

const pathCredsHelpSyn = `Issue a new Datadog credential for a role.`

const pathCredsHelpDesc = `
Each read creates a new Datadog credential of the role's credential_type and
returns it once, with a lease of the role's ttl and max_ttl; it is deleted in
Datadog when the lease is revoked or expires. A role's shared API key
(api_key_mode shared) is made once per api_key_rotation window and deleted
when the last lease holding it ends.

A write (or a read with parameters) may narrow the credential: scopes, a
subset of the role's scopes (any Datadog permission names for an unscoped
role; not for api_key roles), and ttl, a lease no longer than the role's ttl
(the mount's default lease TTL when the role has none). Asking for more is
refused with a 400 naming what is too much. The credential is created in
Datadog with the narrowed scopes; the lease lasts ttl, and so do its renewals
without an increment; it renews while the role still grants every narrowed
scope. A token's lease never outlives
its expiry in Datadog. Renewal is refused once the role issues something else
(another credential_type, service account or scopes) or is deleted, once the
credential was deleted outside Vault, and when it falls outside config's
allowed_scopes.

With an access_token root (config), Datadog's rules for access tokens apply
to every credential, and the engine checks them before it calls Datadog: a
role of an application key type or personal_access_token is refused with a
400 and nothing is created; a token's scopes (narrowed or not) must be among
the root token's; a token expires in Datadog no later than the root, and
every lease ends before it (a warning says when the lease's max_ttl was
shortened for it, which happens more as the root ages).

Returned fields, by credential_type:
  application_key, service_account_application_key:
    application_key, application_key_id and scopes (DD_APP_KEY); with
    api_key_mode shared (the default), api_key and api_key_id (the role's API
    key of the current window, the same for every lease of the window,
    DD_API_KEY); with dynamic, a new API key of the lease's own; with static,
    api_key alone (config's own api_key; refused when config has none); with
    none, neither.
    service_account_id for the latter: the role's, or with
    service_account_ids the one that holds the fewest keys.
  personal_access_token, service_access_token:
    access_token (sent as Authorization: Bearer, or as DD-APPLICATION-KEY,
    DD_APP_KEY, with no API key), access_token_id, scopes,
    expires_at (when Datadog itself expires the token); service_account_id
    for the latter.
  api_key:
    api_key and api_key_id alone (DD_API_KEY), for Agents and intake: the
    role's key of the current window (api_key_mode shared, the default), or
    one of the lease's own (dynamic).
Every kind also returns name (the credential's name in Datadog), site
(DD_SITE) and api_url.
`
