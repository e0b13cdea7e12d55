package backend

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

const rotateRootPath = "config/rotate-root"

// minRotationPeriod is Vault's rollback timer, which runs the periodic
// function that rotates: a shorter period could not be kept.
const minRotationPeriod = time.Minute

// defaultRootScopes is what the engine needs for every credential kind:
// application keys and personal access tokens of its identity
// (user_app_keys), API keys, service accounts' keys and tokens, and the
// look-ups of permissions, roles and service accounts (user_access_read).
// Taking over keys of another user after a config change also needs
// org_app_keys_read and org_app_keys_write.
var defaultRootScopes = []string{
	"api_keys_delete", "api_keys_read", "api_keys_write",
	"service_account_write", "user_access_read", "user_app_keys",
}

// Kinds of the write-ahead log entries of a rotation, one per step that
// leaves something in Datadog: the new root credential until config holds
// it, the old one until it is deleted.
const (
	walRootCreate = "root-create"
	walRootDelete = "root-delete"
)

// rootStep is the WAL entry of one rotation step: Object is deleted by the
// rollback unless config holds it as the root credential by then.
type rootStep struct {
	Object    datadogObject `json:"object"`
	Visible   string        `json:"visible,omitempty"` // last4 or public portion of Object, to recognise it in config
	CreatedAt time.Time     `json:"created_at"`
	Ends      time.Time     `json:"ends"` // the rotation is surely over: the entry may be rolled back
}

func pathConfigRotateRoot(b *datadogBackend) *framework.Path {
	return &framework.Path{
		Pattern: rotateRootPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathRotateRoot,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "rotate", OperationSuffix: "root"},
				Summary:                     rotateRootSummary,
				Responses:                   rotateRootResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    pathRotateRootHelpSyn,
		HelpDescription: pathRotateRootHelpDesc,
	}
}

func (b *datadogBackend) pathRotateRoot(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, warning, err := b.rotateRoot(ctx, req.Storage)
	switch {
	case errors.Is(err, errNotConfigured):
		return logical.ErrorResponse("the engine is not configured: write %sconfig first", req.MountPoint), nil
	case errors.Is(err, errRootUnknown), errors.Is(err, errRootContained):
		return logical.ErrorResponse(err.Error()), nil
	case err != nil:
		return nil, err
	}
	data := map[string]interface{}{
		"credential_type": cfg.rootKind(),
		"key_id":          cfg.RootKeyID,
		"key_name":        cfg.RootKeyName,
		"key_last4":       last4(cfg.rootSecret()),
		"scopes":          cfg.rootScopes(),
		"rotated_at":      cfg.LastRotation.Format(time.RFC3339),
	}
	if cfg.RootExpiresAt != nil {
		data["expires_at"] = cfg.RootExpiresAt.Format(time.RFC3339)
	}
	resp := &logical.Response{Data: data}
	if warning != "" {
		resp.AddWarning(warning)
	}
	if msg := cfg.rootEndWarning(time.Now()); msg != "" {
		resp.AddWarning(msg)
	}
	return resp, nil
}

// setRoot applies a write of the root credential fields: app_key, or
// access_token with service_account_id. A new secret makes the root one the
// engine has not identified yet, and restarts the rotation period.
func (c *datadogConfig) setRoot(d *framework.FieldData) string {
	appKey, hasAppKey := d.GetOk("app_key")
	token, hasToken := d.GetOk("access_token")
	account, hasAccount := d.GetOk("service_account_id")
	before := c.rootSecret()
	switch {
	case hasAppKey && hasToken:
		return "give app_key or access_token, not both: the engine acts with one root credential"
	case hasAppKey && hasAccount:
		return "service_account_id goes with access_token only: an app_key acts as the user that owns it"
	case hasAppKey:
		c.AppKey, c.AccessToken, c.ServiceAccountID = strings.TrimSpace(appKey.(string)), "", ""
	case hasToken:
		c.AccessToken, c.AppKey = strings.TrimSpace(token.(string)), ""
		if hasAccount {
			c.ServiceAccountID = strings.TrimSpace(account.(string))
		}
		if c.ServiceAccountID == "" {
			return "service_account_id is required with access_token: the user id of the service account that owns the token"
		}
	case hasAccount && strings.TrimSpace(account.(string)) != c.ServiceAccountID:
		return "service_account_id changes only with an access_token of the new service account"
	}
	if c.rootSecret() != before {
		c.RootKeyID, c.RootKeyName, c.RootExpiresAt, c.RootTokenScopes = "", "", nil, nil
		c.LastRotation = time.Now().UTC()
	}
	return ""
}

func (c *datadogConfig) rootSecret() string {
	if c.AccessToken != "" {
		return c.AccessToken
	}
	return c.AppKey
}

// rootKind is the Datadog kind of the root credential.
func (c *datadogConfig) rootKind() string {
	if c.AccessToken != "" {
		return kindServiceAccessToken
	}
	return kindApplicationKey
}

func (c *datadogConfig) rootScopes() []string {
	if len(c.RootScopes) > 0 {
		return c.RootScopes
	}
	// A token root keeps its own: Datadog lets it make no token with more,
	// and its token roles need them.
	if c.tokenRoot() && len(c.RootTokenScopes) > 0 {
		return c.RootTokenScopes
	}
	return defaultRootScopes
}

// rootScopesProblem refuses root_scopes that Datadog would refuse, or that
// would leave a rotated root unable to rotate again.
func (c *datadogConfig) rootScopesProblem() string {
	for _, scope := range c.RootScopes {
		if !permissions.IsKnown(scope) {
			return fmt.Sprintf("root_scopes: %q is not a Datadog permission name", scope)
		}
	}
	need := "user_app_keys" // to create and delete the identity's own application keys
	if c.rootKind() == kindServiceAccessToken {
		need = "service_account_write" // to create and revoke the service account's tokens
	}
	if len(c.RootScopes) > 0 && !slices.Contains(c.RootScopes, need) {
		return fmt.Sprintf("root_scopes must include %s: a root %s without it could not be rotated again", need, describeKind(c.rootKind()))
	}
	return ""
}

// rootObject is the root credential as a Datadog object: ID and Name are
// empty until the engine has identified it.
func (c *datadogConfig) rootObject() datadogObject {
	return datadogObject{Kind: c.rootKind(), ID: c.RootKeyID, Name: c.RootKeyName, Owner: c.OwnerID, Home: c.home(), ExpiresAt: c.RootExpiresAt}
}

// holdsRoot reports whether config's root credential is o, whose visible
// part (last4 or public portion) is visible.
func (c *datadogConfig) holdsRoot(o datadogObject, visible string) bool {
	switch {
	case o.Kind != c.rootKind():
		return false
	case c.RootKeyID != "" && o.ID != "":
		return c.RootKeyID == o.ID
	case c.RootKeyName != "" && o.Name != "":
		return c.RootKeyName == o.Name
	}
	return visible != "" && shows(c.rootSecret(), visible)
}

// shows reports whether a listing's visible part is that of secret: the
// last 4 characters of an application key, the start of an access token.
func shows(secret, visible string) bool {
	if strings.HasPrefix(secret, "ddsat_") || strings.HasPrefix(secret, "ddpat_") {
		return strings.HasPrefix(secret, visible)
	}
	return strings.HasSuffix(secret, visible)
}

// nextRotation is when the engine rotates the root credential by itself:
// a rotation period after the last rotation. Zero: never. A rotation
// replaces a token root's secret, not its end (Datadog lets no token make
// one that outlives it), so none is scheduled at or past that end.
func (c *datadogConfig) nextRotation() time.Time {
	if c.RotationPeriod <= 0 {
		return time.Time{}
	}
	next := c.LastRotation.Add(c.RotationPeriod)
	if end := c.rootEnd(); !end.IsZero() && !next.Before(end) {
		return time.Time{}
	}
	return next
}

// rootStatus is what config read tells of the root credential.
func (c *datadogConfig) rootStatus() map[string]interface{} {
	status := map[string]interface{}{
		"root_credential_type": c.rootKind(),
		"root_key_id":          c.RootKeyID,
		"root_key_name":        c.RootKeyName,
		"root_scopes":          c.rootScopes(),
		"root_token_scopes":    append([]string{}, c.RootTokenScopes...), // [] rather than null when unknown
		"rotation_period":      int64(c.RotationPeriod.Seconds()),
		"service_account_id":   c.ServiceAccountID,
		"access_token_last4":   last4(c.AccessToken),
		"last_rotation":        "",
		"next_rotation":        "",
		"root_expires_at":      "",
	}
	if !c.LastRotation.IsZero() {
		status["last_rotation"] = c.LastRotation.Format(time.RFC3339)
	}
	if next := c.nextRotation(); !next.IsZero() {
		status["next_rotation"] = next.Format(time.RFC3339)
	}
	if c.RootExpiresAt != nil {
		status["root_expires_at"] = c.RootExpiresAt.Format(time.RFC3339)
	}
	return status
}

// errRootUnknown: the engine cannot tell which Datadog object its root
// credential is, so it cannot delete it after a rotation.
var errRootUnknown = errors.New("the root credential cannot be identified in Datadog")

// identifyRoot finds the root credential's id, name and (for a token)
// expiry and scopes in Datadog, from the part of the secret listings show
// (or, known, its id).
func identifyRoot(ctx context.Context, client datadogAPI, cfg *datadogConfig) (datadogObject, []string, error) {
	o := cfg.rootObject()
	if o.ID != "" && !cfg.rootScopesUnknown() {
		return o, cfg.RootTokenScopes, nil
	}
	listed, err := client.List(ctx, datadogObject{Kind: o.Kind, Owner: o.Owner, Home: o.Home}, findMaxPages)
	if err != nil {
		return o, nil, fmt.Errorf("%w: listing the %ss of user %s: %w", errRootUnknown, describeKind(o.Kind), o.Owner, err)
	}
	var found []listedObject
	for _, l := range listed {
		if o.ID != "" && l.ID == o.ID || o.ID == "" && l.Visible != "" && shows(cfg.rootSecret(), l.Visible) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return o, nil, fmt.Errorf("%w: %d of the %d %ss of user %s end like it; write a new root credential to config "+
			"(or delete the look-alikes in Datadog) and rotate again", errRootUnknown, len(found), len(listed), describeKind(o.Kind), o.Owner)
	}
	o.ID, o.Name = found[0].ID, found[0].Name
	if found[0].ExpiresAt != nil {
		o.ExpiresAt = found[0].ExpiresAt
	}
	return o, found[0].Scopes, nil
}

// madeRoot reports whether the root credential is one a rotation of this
// mount made: nobody outside Vault holds its secret, so the engine deletes
// it when it stops using it (config replaced or deleted, mount disabled),
// or it would stay valid in Datadog with no one able to delete it.
func (b *datadogBackend) madeRoot(cfg *datadogConfig) bool {
	return cfg != nil && cfg.RootKeyID != "" && b.ownRootName(cfg.RootKeyName)
}

// retireRoot deletes a root credential the engine made and no longer uses,
// acting as that credential itself, which any identity the new config acts
// as might not be allowed to.
func (b *datadogBackend) retireRoot(ctx context.Context, cfg *datadogConfig) error {
	client, err := b.newClient(cfg, b.Logger())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.cleanupBudget())
	defer cancel()
	o := cfg.rootObject()
	if err := client.Delete(ctx, o); err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("error deleting the engine's previous root %s %s (%s): %w", describeKind(o.Kind), o.ID, o.Name, err)
	}
	b.Logger().Info("deleted a root credential the engine no longer uses", "kind", o.Kind, "id", o.ID, "name", o.Name)
	return nil
}

// cleanup runs when the plugin stops serving the mount. When the mount is
// being disabled its storage goes next: a root credential the engine made
// would be lost, so it is deleted first (leases were revoked before).
func (b *datadogBackend) cleanup(ctx context.Context) {
	b.stopWatch()
	b.stopTidy()
	b.trail.close() // posts the revocations' audit events still queued
	if b.storage == nil || !b.System().Tainted() || !b.WriteSafeReplicationState() {
		return
	}
	cfg, err := getConfig(ctx, b.storage)
	if err != nil || cfg == nil {
		return
	}
	b.finalSweep(ctx, cfg)
	if !b.madeRoot(cfg) {
		return
	}
	if err := b.retireRoot(ctx, cfg); err != nil {
		b.Logger().Error("the mount is disabled but its root credential could not be deleted: delete it in Datadog", "id", cfg.RootKeyID, "name", cfg.RootKeyName, "error", err)
	}
}

// rotationBudget bounds a rotation's Datadog calls, as credsBudget does a
// creds request's.
func (c *datadogConfig) rotationBudget() time.Duration { return 4 * c.requestTimeout() }

// rootName names a root credential: it starts like every name the engine
// makes, but does not end like a credential's (the mount's marker and a
// record id), so that tidy never takes it for an orphan.
func rootName(marker string, at time.Time) string {
	return rootNamePrefix(marker) + strconv.FormatInt(at.Unix(), 10) + "-" + strings.ToLower(rand.Text()[:8])
}

func rootNamePrefix(marker string) string { return "vault-root-" + marker + "-" }

// rotateRoot replaces the root credential: it creates a new one for the same
// identity, checks that it works, stores it, then deletes the old one. A
// WAL entry covers each credential while it is not where it belongs (the
// new one until config holds it, the old one until deleted), so that a
// crash at any step leaves config with one working root credential and the
// rollback deletes the other. It returns the stored config, and a warning
// when the old credential is left for the rollback to delete.
func (b *datadogBackend) rotateRoot(ctx context.Context, s logical.Storage) (*datadogConfig, string, error) {
	b.rootLock.Lock()
	defer b.rootLock.Unlock()
	cfg, err := getConfig(ctx, s)
	if err != nil {
		return nil, "", err
	}
	if cfg == nil {
		return nil, "", errNotConfigured
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.rotationBudget())
	defer cancel()
	client, err := b.newClient(cfg, b.Logger())
	if err != nil {
		return nil, "", err
	}
	old, oldScopes, err := identifyRoot(ctx, client, cfg)
	if err != nil {
		return nil, "", err
	}

	now := time.Now().UTC()
	next := datadogObject{Kind: old.Kind, Owner: old.Owner, Name: rootName(b.marker, now), Home: cfg.home()}
	scopes := cfg.rootScopes()
	if next.Kind == kindServiceAccessToken {
		// Made with the current root, the next one holds no more scopes and
		// ends when it does (no expiry if it has none): a rotation replaces
		// the secret, not the end date.
		if len(cfg.RootScopes) == 0 && len(oldScopes) > 0 {
			scopes = oldScopes
		}
		if err := rotationScopesProblem(oldScopes, scopes); err != nil {
			return nil, "", err
		}
		next.ExpiresAt = old.ExpiresAt
	}
	step := rootStep{Object: next, CreatedAt: now, Ends: now.Add(cfg.rotationBudget() + requestEndMargin)}
	createWAL, err := framework.PutWAL(ctx, s, walRootCreate, &step)
	if err != nil {
		return nil, "", err
	}
	sess := &session{cfg: cfg, client: client}
	created, err := client.Create(ctx, next, scopes)
	if err != nil {
		return nil, "", b.abandonRotation(ctx, s, sess, createWAL, next, ambiguous(err), fmt.Errorf("creating the new root %s: %w", describeKind(next.Kind), err))
	}
	next.ID = created.ID
	if created.ExpiresAt != nil {
		next.ExpiresAt = created.ExpiresAt
	}

	rotated := *cfg
	if next.Kind == kindServiceAccessToken {
		rotated.AccessToken = created.Secret
	} else {
		rotated.AppKey = created.Secret
	}
	rotated.RootKeyID, rotated.RootKeyName, rotated.RootExpiresAt, rotated.LastRotation = next.ID, next.Name, next.ExpiresAt, now
	if next.Kind == kindServiceAccessToken {
		rotated.RootTokenScopes = scopes
	}
	newClient, err := b.newClient(&rotated, b.Logger())
	if err == nil {
		err = checkRoot(ctx, newClient, cfg.OwnerID)
	}
	if err != nil {
		return nil, "", b.abandonRotation(ctx, s, sess, createWAL, next, true, fmt.Errorf("the new root %s %s does not work: %w", describeKind(next.Kind), next.ID, err))
	}

	deleteStep := rootStep{Object: old, Visible: last4(cfg.rootSecret()), CreatedAt: now, Ends: step.Ends}
	if old.Kind == kindServiceAccessToken {
		deleteStep.Visible = "" // a token is recognised by its id only
	}
	deleteWAL, err := framework.PutWAL(ctx, s, walRootDelete, &deleteStep)
	if err != nil {
		return nil, "", b.abandonRotation(ctx, s, sess, createWAL, next, true, err)
	}
	entry, err := logical.StorageEntryJSON(configPath, &rotated)
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		_ = framework.DeleteWAL(ctx, s, deleteWAL) // the old credential stays the root
		return nil, "", b.abandonRotation(ctx, s, sess, createWAL, next, true, fmt.Errorf("storing the new root credential: %w", err))
	}
	b.reset()
	if err := framework.DeleteWAL(ctx, s, createWAL); err != nil {
		b.Logger().Warn("could not remove a rotation's WAL entry; the rollback will", "error", err)
	}
	b.Logger().Info("rotated the root credential", "kind", next.Kind, "id", next.ID, "name", next.Name, "previous_id", old.ID)

	if err := newClient.Delete(ctx, old); err != nil && !errors.Is(err, errNotFound) {
		b.Logger().Warn("the previous root credential is not deleted yet; the rollback retries every minute", "id", old.ID, "error", err)
		return &rotated, fmt.Sprintf("the previous root %s %s (%s) is not deleted yet (%v); the engine retries every minute until it is",
			describeKind(old.Kind), old.ID, old.Name, err), nil
	}
	if err := framework.DeleteWAL(ctx, s, deleteWAL); err != nil {
		b.Logger().Warn("could not remove a rotation's WAL entry; the rollback will", "error", err)
	}
	return &rotated, "", nil
}

// checkRoot checks that a new root credential acts as owner. Datadog may
// take a moment before a new credential authenticates, so a refusal is
// asked again a few times.
func checkRoot(ctx context.Context, client datadogAPI, owner string) error {
	for attempt := 0; ; attempt++ {
		me, err := client.CurrentUser(ctx)
		switch {
		case err == nil && me.ID != owner:
			return fmt.Errorf("it acts as user %s, not %s", me.ID, owner)
		case err == nil:
			return nil
		case !refused(err) || attempt == 4:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// abandonRotation undoes a rotation that failed before config held the new
// credential: it deletes the new credential now if it can (looking it up by
// name when its create was ambiguous), or leaves its WAL entry for the
// rollback, and says so in the error.
func (b *datadogBackend) abandonRotation(ctx context.Context, s logical.Storage, sess *session, walID string, next datadogObject, mayExist bool, cause error) error {
	if mayExist {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), sess.cfg.cleanupBudget())
		defer cancel()
		if err := b.deleteObjects(cleanup, sess, []datadogObject{next}, time.Now().Add(-maxClockSkew)); err != nil {
			return fmt.Errorf("root credential not rotated: %w; the new %s %q, if Datadog created it, is deleted by the engine's rollback within minutes (%v)",
				cause, describeKind(next.Kind), next.Name, err)
		}
	}
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		b.Logger().Warn("could not remove a rotation's WAL entry; the rollback will", "error", err)
	}
	return fmt.Errorf("root credential not rotated (the previous one stays in use): %w", cause)
}

// rollbackRotations replays the WAL entries of rotations that did not
// finish: each entry's credential is deleted unless config holds it as the
// root credential.
func (b *datadogBackend) rollbackRotations(ctx context.Context, req *logical.Request, immediate bool) error {
	ids, err := framework.ListWAL(ctx, req.Storage)
	if err != nil || len(ids) == 0 {
		return err
	}
	b.rootLock.Lock()
	defer b.rootLock.Unlock()
	var errs []error
	for _, id := range ids {
		entry, err := framework.GetWAL(ctx, req.Storage, id)
		if err != nil || entry == nil {
			errs = append(errs, err)
			continue
		}
		if entry.Kind != walRootCreate && entry.Kind != walRootDelete {
			continue
		}
		var step rootStep
		if err := mapToStruct(entry.Data, &step); err != nil {
			errs = append(errs, fmt.Errorf("reading rotation WAL entry %s: %w", id, err))
			continue
		}
		if !immediate && time.Now().Before(step.Ends) {
			continue
		}
		cfg, err := getConfig(ctx, req.Storage)
		if err != nil || cfg == nil {
			errs = append(errs, fmt.Errorf("cannot roll back rotation WAL entry %s without config: %w", id, cmpErr(err, errNotConfigured)))
			continue
		}
		if !cfg.holdsRoot(step.Object, step.Visible) {
			sess, err := b.session(ctx, req.Storage)
			if err != nil || sess == nil {
				errs = append(errs, cmpErr(err, errNotConfigured))
				continue
			}
			if err := b.deleteObjects(ctx, sess, []datadogObject{step.Object}, step.CreatedAt.Add(-maxClockSkew)); err != nil {
				errs = append(errs, fmt.Errorf("deleting the root %s %s (%s) a rotation left: %w", describeKind(step.Object.Kind), step.Object.ID, step.Object.Name, err))
				continue
			}
			b.Logger().Info("rolled back a rotation step: deleted a root credential config does not hold", "kind", step.Object.Kind, "id", step.Object.ID, "name", step.Object.Name)
		}
		if err := framework.DeleteWAL(ctx, req.Storage, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func cmpErr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// periodicRotation rotates the root credential when it is due.
func (b *datadogBackend) periodicRotation(ctx context.Context, s logical.Storage) error {
	sess, err := b.session(ctx, s)
	if err != nil || sess == nil {
		return err
	}
	b.warnRootEnd(sess.cfg)
	next := sess.cfg.nextRotation()
	if next.IsZero() || time.Now().Before(next) {
		return nil
	}
	if _, warning, err := b.rotateRoot(ctx, s); err != nil {
		return fmt.Errorf("scheduled rotation of the root credential: %w", err)
	} else if warning != "" {
		b.Logger().Warn("scheduled rotation of the root credential: " + warning)
	}
	return nil
}

const pathRotateRootHelpSyn = `Rotate the engine's root credential (its app_key, or its access_token).`

const pathRotateRootHelpDesc = `
Creates a new root credential for the configured identity: an application
key with root_scopes (config; default: what the engine needs), or for an
access_token root a service access token of the same service account, with
root_scopes or by default the current token's scopes, expiring when the
current one does. Made with the current token, it can have no more scopes
and no later expiry (Datadog's rules for access tokens): a rotation replaces
a token root's secret, never its end, and root_scopes outside the current
token's are refused. It checks that the new credential works, stores it in
config, and deletes the old one in Datadog. The answer gives the new credential's
credential_type, key_id, key_name, key_last4 (its last 4 characters), scopes,
rotated_at and, for an access token, expires_at, never the secret: after a
rotation nobody outside Vault holds the engine's root credential. A warning
says when the old one could not be deleted yet; the engine retries every
minute. When the engine cannot tell which Datadog credential its root is
(config read shows root_key_id once it can), the rotation is refused.

Each step is covered by a write-ahead log entry: if Vault or the plugin
stops mid-way, config keeps exactly one working root credential and the
engine deletes the other one within minutes.

Leases issued before a rotation keep revoking: their keys belong to the
same identity, not to the root credential. With rotation_period (config)
the engine also rotates by itself; config read shows last_rotation and
next_rotation.

The previous root credential stops working: a tool that writes config from
its own copy of the key (a Terraform apply, say) must not write it again.
`
