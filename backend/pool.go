package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// Datadog allows an owner at most 1000 application keys
// (meta.max_allowed_per_user). A service_account_application_key role may
// name several service accounts (service_account_ids), a pool: each creds
// request takes the least-loaded one below the limit, so that the role
// issues as many live keys as its service accounts together may hold.
// Access tokens have no such limit, so pools are for application keys only.
const (
	datadogAppKeyLimit = 1000
	maxPoolSize        = 100 // service accounts in one role: each is checked with Datadog at role write
)

// nearLimit is the load from which an owner's count is checked with
// Datadog before it gets a key: 90% of the limit, and at least one key
// short of it.
func nearLimit(limit int) int { return limit - max(limit/10, 1) }

// ownerIndex counts, per service account, the application keys this
// mount's records hold (leases, and creds requests in flight or to roll
// back), so that picking an owner reads no storage. It is built once from
// the records, on the first request that needs it, then follows every
// record written (reserve) and deleted (forget). Only the active node
// writes records, so only its index is kept; other nodes count afresh.
type ownerIndex struct {
	buildLock sync.Mutex // one build at a time

	mu       sync.Mutex
	built    bool
	building bool
	gone     map[string]bool   // records deleted while a build runs
	owners   map[string]string // record id → owner of its service account application key
	counts   map[string]int    // owner → records
	// What Datadog said when last asked: keys of the owner that are not
	// this mount's (other mounts', people's), and its limit per owner.
	external map[string]int
	limit    int
}

// ensure builds the index from the records unless it is built.
func (ix *ownerIndex) ensure(ctx context.Context, s logical.Storage) error {
	ix.mu.Lock()
	built := ix.built
	ix.mu.Unlock()
	if built {
		return nil
	}
	ix.buildLock.Lock()
	defer ix.buildLock.Unlock()
	ix.mu.Lock()
	if ix.built {
		ix.mu.Unlock()
		return nil
	}
	ix.building, ix.gone = true, map[string]bool{}
	ix.mu.Unlock()

	recs, err := records(ctx, s)

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.building = false
	if err != nil {
		ix.gone = nil
		return err
	}
	ix.owners, ix.counts = map[string]string{}, map[string]int{}
	for _, rec := range recs {
		if owner := recordOwner(rec); owner != "" && !ix.gone[rec.ID] {
			ix.owners[rec.ID] = owner
			ix.counts[owner]++
		}
	}
	ix.gone, ix.built = nil, true
	return nil
}

// recordOwner is the service account whose application key a record
// holds, or "".
func recordOwner(rec *credentialRecord) string {
	for _, o := range rec.Objects {
		if o.Kind == kindServiceAccountApplicationKey {
			return o.Owner
		}
	}
	return ""
}

// countOwners counts the records' service account application keys by owner.
func countOwners(recs []*credentialRecord) map[string]int {
	counts := map[string]int{}
	for _, rec := range recs {
		if owner := recordOwner(rec); owner != "" {
			counts[owner]++
		}
	}
	return counts
}

// reserve counts the record's key for owner (moving it from the owner an
// earlier attempt of the request counted it for). The index must be built.
func (ix *ownerIndex) reserve(id, owner string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drop(id)
	ix.owners[id] = owner
	ix.counts[owner]++
}

// forget stops counting a deleted record.
func (ix *ownerIndex) forget(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	switch {
	case ix.built:
		ix.drop(id)
	case ix.building:
		ix.gone[id] = true // the build may have read it before it went
	}
}

func (ix *ownerIndex) drop(id string) {
	if owner, counted := ix.owners[id]; counted {
		delete(ix.owners, id)
		if ix.counts[owner]--; ix.counts[owner] <= 0 {
			delete(ix.counts, owner)
		}
	}
}

// limitPerOwner is Datadog's limit as last reported, or its documented one.
func (ix *ownerIndex) limitPerOwner() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return cmp.Or(ix.limit, datadogAppKeyLimit)
}

// observe takes what Datadog counted for owner: total keys, and its limit.
func (ix *ownerIndex) observe(owner string, total, limit int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if limit > 0 {
		ix.limit = limit
	}
	if ix.external == nil {
		ix.external = map[string]int{}
	}
	ix.external[owner] = max(total-ix.counts[owner], 0)
}

// pick chooses the least-loaded owner not tried yet (ties: the first in
// the role's order). Below nearLimit it is counted for the record at once,
// so that concurrent requests spread; otherwise near is true and the
// caller checks with Datadog first. An empty owner: every one was tried.
func (ix *ownerIndex) pick(id string, pool []string, tried map[string]bool) (owner string, near bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	load := -1
	for _, candidate := range pool {
		if tried[candidate] {
			continue
		}
		if l := ix.counts[candidate] + ix.external[candidate]; load < 0 || l < load {
			owner, load = candidate, l
		}
	}
	if owner == "" || load >= nearLimit(cmp.Or(ix.limit, datadogAppKeyLimit)) {
		return owner, owner != ""
	}
	ix.drop(id)
	ix.owners[id] = owner
	ix.counts[owner]++
	return owner, false
}

// live returns the index's count of each owner.
func (ix *ownerIndex) live(owners []string) map[string]int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make(map[string]int, len(owners))
	for _, o := range owners {
		out[o] = ix.counts[o]
	}
	return out
}

// serviceAccounts are the service accounts whose credentials the role
// issues: its service_account_id, or its service_account_ids.
func (r *datadogRole) serviceAccounts() []string {
	if len(r.ServiceAccountIDs) > 0 {
		return r.ServiceAccountIDs
	}
	if r.ServiceAccountID != "" {
		return []string{r.ServiceAccountID}
	}
	return nil
}

// setServiceAccounts applies a role write's service_account_id and
// service_account_ids. A role has one or the other: both in one write is
// refused, and setting one replaces the other.
func setServiceAccounts(d *framework.FieldData, role *datadogRole) string {
	one, oneSet := d.GetOk("service_account_id")
	many, manySet := d.GetOk("service_account_ids")
	var id string
	if oneSet {
		id = strings.TrimSpace(one.(string))
	}
	var ids []string
	if manySet {
		ids = normalizeScopes(many.([]string))
	}
	if id != "" && len(ids) > 0 {
		return "service_account_id and service_account_ids are exclusive: give one service account, or a list of them"
	}
	if oneSet {
		role.ServiceAccountID = id
		if id != "" {
			role.ServiceAccountIDs = nil
		}
	}
	if manySet {
		role.ServiceAccountIDs = ids
		if len(ids) > 0 {
			role.ServiceAccountID = ""
		}
	}
	return ""
}

// poolProblem says what is wrong with a role's service_account_ids, or "".
func (r *datadogRole) poolProblem() string {
	switch {
	case len(r.ServiceAccountIDs) == 0:
		return ""
	case r.CredentialType != kindServiceAccountApplicationKey:
		return fmt.Sprintf("service_account_ids applies only to credential_type %s: Datadog limits the application keys of an owner, "+
			"not its access tokens; give a %s role one service_account_id", kindServiceAccountApplicationKey, describeKind(r.CredentialType))
	case r.ServiceAccountID != "":
		return "service_account_id and service_account_ids are exclusive: give one service account, or a list of them"
	case len(r.ServiceAccountIDs) > maxPoolSize:
		return fmt.Sprintf("service_account_ids names %d service accounts; at most %d", len(r.ServiceAccountIDs), maxPoolSize)
	}
	return ""
}

// checkServiceAccounts checks each of the role's service accounts with
// Datadog. For a pool, it also asks how many keys each holds already, and
// Datadog's limit, so that the first requests spread by Datadog's counts.
func (b *datadogBackend) checkServiceAccounts(ctx context.Context, s logical.Storage, role *datadogRole) (string, error) {
	if len(role.ServiceAccountIDs) == 0 {
		return b.checkServiceAccount(ctx, s, "service_account_id", role.ServiceAccountID)
	}
	// Each service account is asked for at once; the first problem in the
	// role's order is the answer.
	msgs := make([]string, len(role.ServiceAccountIDs))
	errs := make([]error, len(role.ServiceAccountIDs))
	inParallel(len(role.ServiceAccountIDs), func(i int) {
		msgs[i], errs[i] = b.checkServiceAccount(ctx, s, "service_account_ids", role.ServiceAccountIDs[i])
	})
	for i := range msgs {
		if msgs[i] != "" || errs[i] != nil {
			return msgs[i], errs[i]
		}
	}
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil {
		return "", err
	}
	if err := b.ownerKeys.ensure(ctx, s); err != nil {
		return "", err
	}
	for _, id := range role.ServiceAccountIDs {
		// Only a hint: issuing checks again near the limit.
		if total, limit, err := sess.client.ApplicationKeyCount(ctx, id); err == nil {
			b.ownerKeys.observe(id, total, limit)
		} else {
			b.Logger().Debug("could not count the application keys of a service account", "service_account_id", id, "error", err)
		}
	}
	return "", nil
}

// createForOwner creates the record's objects; a service account
// application key of a pool goes to the least-loaded service account
// below Datadog's limit, and to the next one if Datadog refuses it at the
// limit all the same. Every service account application key is counted
// for its owner from the moment it is chosen.
func (b *datadogBackend) createForOwner(ctx context.Context, s logical.Storage, sess *session, role *datadogRole, rec *credentialRecord, scopes []string) ([]string, *logical.Response, error) {
	if len(rec.Objects) == 0 || rec.Objects[0].Kind != kindServiceAccountApplicationKey {
		return b.createObjects(ctx, s, sess, rec, scopes)
	}
	main := &rec.Objects[0]
	if err := b.ownerKeys.ensure(ctx, s); err != nil {
		return nil, nil, fmt.Errorf("error counting the engine's application keys per service account: %w", err)
	}
	if len(role.ServiceAccountIDs) == 0 {
		b.ownerKeys.reserve(rec.ID, main.Owner)
		return b.createCounted(ctx, s, sess, rec, scopes)
	}

	tried := map[string]bool{}
	for {
		owner, err := b.pickOwner(ctx, sess, role.ServiceAccountIDs, rec.ID, tried)
		if err != nil {
			return nil, nil, err
		}
		if owner == "" {
			return nil, b.poolFull(rec.Role, role.ServiceAccountIDs), nil
		}
		main.Owner = owner
		watch := &limitWatch{datadogAPI: sess.client}
		secrets, resp, err := b.createCounted(ctx, s, &session{cfg: sess.cfg, client: watch}, rec, scopes)
		if !watch.refused {
			return secrets, resp, err
		}
		// Datadog counts keys the engine does not know of: learn them,
		// and try the next service account.
		tried[owner] = true
		total, limit, cerr := sess.client.ApplicationKeyCount(ctx, owner)
		if cerr != nil {
			total, limit = b.ownerKeys.limitPerOwner(), 0
		}
		b.ownerKeys.observe(owner, total, limit)
		b.Logger().Info("Datadog refused an application key to a service account at its limit; trying the next one of the role",
			"role", rec.Role, "service_account_id", owner, "keys", total)
	}
}

// pickOwner returns the service account of pool that gets the record's
// key, counted for it; "" when every one holds as many keys as Datadog
// allows. An owner near the limit is counted with Datadog first.
func (b *datadogBackend) pickOwner(ctx context.Context, sess *session, pool []string, id string, tried map[string]bool) (string, error) {
	for {
		owner, near := b.ownerKeys.pick(id, pool, tried)
		if !near {
			return owner, nil
		}
		total, limit, err := sess.client.ApplicationKeyCount(ctx, owner)
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("error counting the application keys of service account %s: %w", owner, err)
			}
			// Datadog's answer to the create decides instead.
			b.Logger().Warn("could not count the application keys of a service account near Datadog's limit; trying it",
				"service_account_id", owner, "error", err)
			b.ownerKeys.reserve(id, owner)
			return owner, nil
		}
		b.ownerKeys.observe(owner, total, limit)
		if total < cmp.Or(limit, b.ownerKeys.limitPerOwner()) {
			b.ownerKeys.reserve(id, owner)
			return owner, nil
		}
		tried[owner] = true
	}
}

// createCounted is createObjects, after which the index counts the record
// only if it is still stored: a request that failed early leaves none.
func (b *datadogBackend) createCounted(ctx context.Context, s logical.Storage, sess *session, rec *credentialRecord, scopes []string) ([]string, *logical.Response, error) {
	secrets, resp, err := b.createObjects(ctx, s, sess, rec, scopes)
	if err == nil && resp == nil {
		return secrets, nil, nil
	}
	if stored, gerr := getRecord(context.WithoutCancel(ctx), s, rec.ID); gerr == nil && stored == nil {
		b.ownerKeys.forget(rec.ID)
	}
	return secrets, resp, err
}

// poolFull is the answer when every service account of a role holds as
// many application keys as Datadog allows.
func (b *datadogBackend) poolFull(roleName string, pool []string) *logical.Response {
	counts := b.ownerKeys.live(pool)
	parts := make([]string, len(pool))
	for i, id := range pool {
		parts[i] = fmt.Sprintf("%s: %d", id, counts[id])
	}
	return logical.ErrorResponse("role %q cannot issue credentials: every service account of its service_account_ids holds Datadog's limit of %d "+
		"application keys per owner (leases of this mount: %s); revoke unused leases, delete unused keys of these service accounts, "+
		"or add service accounts to service_account_ids", roleName, b.ownerKeys.limitPerOwner(), strings.Join(parts, ", "))
}

// limitWatch notes whether Datadog refused a service account application
// key because its owner holds as many as Datadog allows.
type limitWatch struct {
	datadogAPI
	refused bool
}

func (w *limitWatch) Create(ctx context.Context, o datadogObject, scopes []string) (createdObject, error) {
	created, err := w.datadogAPI.Create(ctx, o, scopes)
	if o.Kind == kindServiceAccountApplicationKey && httpStatus(err) == http.StatusBadRequest && limitReached(err) {
		w.refused = true
	}
	return created, err
}

// serviceAccountCounts is what a role read shows: the live application
// keys of this mount per service account of the role, all roles together
// (Datadog's limit is the owner's). Only the active node keeps the index.
func (b *datadogBackend) serviceAccountCounts(ctx context.Context, s logical.Storage, role *datadogRole) (map[string]int, error) {
	owners := role.serviceAccounts()
	if b.System().ReplicationState().HasState(consts.ReplicationPerformanceStandby) {
		recs, err := records(ctx, s)
		if err != nil {
			return nil, err
		}
		all := countOwners(recs)
		counts := make(map[string]int, len(owners))
		for _, o := range owners {
			counts[o] = all[o]
		}
		return counts, nil
	}
	if err := b.ownerKeys.ensure(ctx, s); err != nil {
		return nil, err
	}
	return b.ownerKeys.live(owners), nil
}

// ApplicationKeyCount returns how many application keys a service account
// holds, and Datadog's limit per owner (0 when the answer does not say).
func (c *datadogClient) ApplicationKeyCount(ctx context.Context, owner string) (int, int, error) {
	var out datadogV2.ListApplicationKeysResponse
	err := c.call(ctx, "application key count", true, func(ctx context.Context) (resp *http.Response, err error) {
		opts := datadogV2.NewListServiceAccountApplicationKeysOptionalParameters().WithPageSize(1)
		out, resp, err = c.serviceAccounts.ListServiceAccountApplicationKeys(ctx, owner, *opts)
		return resp, err
	})
	if err != nil {
		return 0, 0, err
	}
	meta := out.GetMeta()
	page := meta.GetPage()
	total, ok := page.GetTotalFilteredCountOk()
	if !ok || total == nil {
		return 0, 0, errors.New("Datadog application key count: the answer had no meta.page.total_filtered_count")
	}
	return int(*total), int(meta.GetMaxAllowedPerUser()), nil
}

// bindingFor is what a lease of the role holds: the role's binding, with
// the service account that owns the lease's credential.
func (r *datadogRole) bindingFor(owner string) roleBinding {
	binding := r.binding()
	if r.kind().serviceAccount {
		binding.ServiceAccountID = owner
	}
	return binding
}

// describeServiceAccounts names a binding's service accounts for a message.
func (issued roleBinding) describeServiceAccounts() string {
	if len(issued.pool) > 0 {
		return "service accounts " + strings.Join(issued.pool, ", ")
	}
	return "service account " + issued.ServiceAccountID
}

// issuesFor reports whether the role's binding covers a lease of owner.
func (now roleBinding) issuesFor(owner string) bool {
	return owner == now.ServiceAccountID || slices.Contains(now.pool, owner)
}
