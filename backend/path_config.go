package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	configPath  = "config"
	defaultSite = "datadoghq.com"
)

// datadogConfig is the identity the engine acts as. Stored seal-wrapped.
type datadogConfig struct {
	APIKey string `json:"api_key"`
	// The root credential: an application key of the identity, or an
	// access token of a service account (which Datadog expires).
	AppKey           string `json:"app_key,omitempty"`
	AccessToken      string `json:"access_token,omitempty"`
	ServiceAccountID string `json:"service_account_id,omitempty"`
	// RootKeyID and RootKeyName identify the root credential in Datadog,
	// once known (rotate-root sets them; for a root written by an operator
	// the first rotation finds its id); RootExpiresAt is a token's expiry.
	RootKeyID     string     `json:"root_key_id,omitempty"`
	RootKeyName   string     `json:"root_key_name,omitempty"`
	RootExpiresAt *time.Time `json:"root_expires_at,omitempty"`
	// RootScopes are the scopes of the root credentials rotate-root creates.
	RootScopes []string `json:"root_scopes,omitempty"`
	// RootTokenScopes are the scopes of an access_token root, as Datadog
	// listed them (or a rotation gave them): the most a token credential
	// may carry (token_root.go). nil: not known.
	RootTokenScopes []string `json:"root_token_scopes,omitempty"`
	// RotationPeriod is how often the engine rotates its root credential;
	// 0: only on request.
	RotationPeriod time.Duration `json:"rotation_period,omitempty"`
	// LastRotation is when the root credential was last rotated, or
	// written by an operator.
	LastRotation time.Time `json:"last_rotation"`

	Site        string `json:"site"`
	APIURL      string `json:"api_url,omitempty"`
	OwnerID     string `json:"owner_id"`
	OwnerHandle string `json:"owner_handle,omitempty"`
	OrgID       string `json:"org_id"`
	// AllowedScopes, when set, is the most any role of the mount may grant.
	AllowedScopes []string `json:"allowed_scopes,omitempty"`
	// RequestTimeout bounds each HTTP call to Datadog; 0 means the default.
	RequestTimeout time.Duration `json:"request_timeout,omitempty"`
	// TidyInterval is how often the engine tidies by itself; 0: never.
	TidyInterval time.Duration `json:"tidy_interval"`
	// WatchInterval is how often the engine checks its leases' credentials
	// for leaks and idleness; 0: never; nil: the default.
	WatchInterval *time.Duration `json:"watch_interval,omitempty"`
	// AuditEvents: post a Datadog event for each credential's issue,
	// renewal and deletion (audit.go).
	AuditEvents bool `json:"audit_events,omitempty"`
	// LastUseLag is how late Datadog reports a key's use; nil: the default
	// (watch.go).
	LastUseLag *time.Duration `json:"last_use_lag,omitempty"`
	// APIKeyReserve is how many of the organisation's API keys roles with
	// api_key_mode dynamic leave free for people; nil: the default.
	APIKeyReserve *int `json:"api_key_reserve,omitempty"`
}

// Bounds of request_timeout.
const (
	defaultRequestTimeout = 30 * time.Second
	maxRequestTimeout     = 5 * time.Minute
)

func (c *datadogConfig) requestTimeout() time.Duration {
	if c.RequestTimeout > 0 {
		return c.RequestTimeout
	}
	return defaultRequestTimeout
}

// credsBudget bounds a creds request's Datadog calls (its creates, a token
// create sent again with a later expiry, waits for a rate-limit window), and
// cleanupBudget the deletions after it failed: together they tell when the
// request is over for sure, and its WAL entry may be rolled back.
func (c *datadogConfig) credsBudget() time.Duration { return 4 * c.requestTimeout() }

func (c *datadogConfig) cleanupBudget() time.Duration {
	return min(4*c.requestTimeout(), 15*time.Second)
}

// baseURL is where the engine's Datadog calls go, as reported to clients.
func (c *datadogConfig) baseURL() string {
	if c.APIURL != "" {
		return c.APIURL
	}
	return "https://api." + c.Site
}

// home is where the objects the engine creates now live.
func (c *datadogConfig) home() datadogHome {
	return datadogHome{OrgID: c.OrgID, Site: c.Site, APIURL: c.APIURL}
}

// reaches returns an error naming where o lives when that is another
// organisation than the configured one: no call there could delete it, and
// a 404 from this one would prove nothing.
func (c *datadogConfig) reaches(o datadogObject) error {
	if o.Home.OrgID == "" || o.Home.OrgID == c.OrgID {
		return nil
	}
	return fmt.Errorf("Datadog %s %s (%s) lives in %s, but the engine is configured for organisation %s at %s: "+
		"configure an identity of that organisation to delete it, or delete it there by hand",
		describeKind(o.Kind), o.ID, o.Name, o.Home, c.OrgID, c.baseURL())
}

// sameIdentity reports whether next acts as the same Datadog user of the
// same organisation as c: a change of its keys, site or URL only.
func (c *datadogConfig) sameIdentity(next *datadogConfig) bool {
	return c.OwnerID == next.OwnerID && (c.OrgID == "" || c.OrgID == next.OrgID)
}

func pathConfig(b *datadogBackend) *framework.Path {
	return &framework.Path{
		Pattern: configPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: withAuditConfig(map[string]*framework.FieldSchema{
			"api_key": {
				Type:        framework.TypeString,
				Description: "Datadog API key of the organisation (32 hex characters). Write-only: never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "API key",
					Sensitive: true,
				},
			},
			"app_key": {
				Type: framework.TypeString,
				Description: "Datadog application key of the identity that will own issued keys; it needs the " +
					"user_app_keys permission, and api_keys_write/api_keys_delete for per-lease API keys. Write-only: never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Application key",
					Sensitive: true,
				},
			},
			"access_token": {
				Type: framework.TypeString,
				Description: "Instead of app_key: a service access token (ddsat_…) of service_account_id, sent as " +
					"Authorization: Bearer. Its expiry is the engine's hard end: rotate-root replaces the token but keeps that end " +
					"(Datadog lets no token make one that outlives it), so write a new token made by another identity before then. " +
					"Under it, roles issue service_access_token (within the token's scopes) and api_key credentials only: Datadog " +
					"lets no access token create application keys. Write-only: never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Access token",
					Sensitive: true,
				},
			},
			"service_account_id": {
				Type:        framework.TypeString,
				Description: "The service account (its Datadog user id) that owns access_token; required with access_token.",
			},
			"root_scopes": {
				Type: framework.TypeCommaStringSlice,
				Description: "Scopes of the root credentials rotate-root creates. Default: " + strings.Join(defaultRootScopes, ",") +
					" — what the engine needs for every credential kind; for an access_token root, the token's own scopes " +
					"(root_scopes must then be among them).",
			},
			"rotation_period": {
				Type: framework.TypeDurationSecond,
				Description: "How often the engine rotates its root credential by itself, such as 720h; at least 1m. " +
					"0 (the default): only on request (config/rotate-root). It never moves an access_token root's expiry.",
			},
			"site": {
				Type:          framework.TypeString,
				Default:       defaultSite,
				AllowedValues: stringsToAny(datadogSites()),
				Description:   "Datadog site of the organisation, one of: " + strings.Join(datadogSites(), ", ") + ".",
			},
			"api_url": {
				Type: framework.TypeString,
				Description: "Optional base URL of the Datadog API (for a proxy or an emulator), such as " +
					"https://dd-proxy.internal:8443. Overrides site for API calls. http:// is allowed only for loopback hosts.",
				DisplayAttrs: &framework.DisplayAttributes{Name: "API URL"},
			},
			"allowed_scopes": {
				Type: framework.TypeCommaStringSlice,
				Description: "Optional guardrail: the Datadog permissions roles of this mount may grant. Role writes, " +
					"creds reads and renewals with scopes outside it (or unscoped) are refused. Empty: any permission name.",
			},
			"request_timeout": {
				Type: framework.TypeDurationSecond,
				Description: "Timeout of each HTTP call to Datadog, such as 10s; default 30s, at most 5m. A creds request " +
					"gets four times this for its Datadog calls, and its write-ahead log entry is rolled back once it is surely over.",
			},
			"last_use_lag": {
				Type: framework.TypeDurationSecond,
				Description: fmt.Sprintf("How late Datadog reports a key's last use, such as 1h (the default, assumed: Datadog does not document it). "+
					"Roles' idle_ttl must be at least twice this, so that a key in use is never deleted as idle; a shorter one applies as that minimum. "+
					"At least 0; lower it only for a Datadog known to report use sooner. Default %s.", defaultLastUseLag),
			},
			"api_key_reserve": {
				Type: framework.TypeInt,
				Description: fmt.Sprintf("How many API keys of the organisation's cap (Datadog's meta.max_allowed, 50 by default) roles with "+
					"api_key_mode dynamic leave free for people: their creds are refused once fewer are free. Default %d.", defaultAPIKeyReserve),
			},
			"tidy_interval": {
				Type:        framework.TypeDurationSecond,
				Description: "How often the engine runs tidy by itself, such as 1h (the default when config is created); 0 turns it off.",
			},
			"watch_interval": {
				Type: framework.TypeDurationSecond,
				Description: "How often the engine reads its leases' credentials from Datadog and deletes those Datadog " +
					"flagged as leaked or that went unused for their role's idle_ttl, such as 5m (the default); at least 1m; 0 turns it off.",
			},
			"force": {
				Type: framework.TypeBool,
				Description: "Write or delete config even though outstanding leases hold Datadog keys that the new " +
					"configuration could not delete. Those keys are left behind: they stay valid in Datadog. Not stored.",
			},
		}),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "configuration"},
				Summary:      "Read the configuration; its keys only by their last four characters.",
				Responses:    configReadResponses(),
			},
			// Writes check the keys with Datadog: a standby would do that
			// only to fail storing the result.
			logical.CreateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
				Summary:                     configWriteSummary,
				Responses:                   configWriteResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
				Summary:                     configWriteSummary,
				Responses:                   configWriteResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.pathConfigDelete,
				DisplayAttrs:                &framework.DisplayAttributes{OperationSuffix: "configuration"},
				Summary:                     "Delete the configuration.",
				Responses:                   stored("Configuration deleted (or there was none).", "which Datadog keys force=true left behind"),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		ExistenceCheck:  b.pathConfigExists,
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}
}

func getConfig(ctx context.Context, s logical.Storage) (*datadogConfig, error) {
	entry, err := s.Get(ctx, configPath)
	if err != nil || entry == nil {
		return nil, err
	}
	cfg := new(datadogConfig)
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("error reading Datadog configuration: %w", err)
	}
	return cfg, nil
}

func (b *datadogBackend) pathConfigExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := getConfig(ctx, req.Storage)
	return cfg != nil, err
}

func (b *datadogBackend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil || cfg == nil {
		return nil, err
	}
	data := map[string]interface{}{
		"site":            cfg.Site,
		"api_url":         cfg.APIURL,
		"owner_id":        cfg.OwnerID,
		"owner_handle":    cfg.OwnerHandle,
		"org_id":          cfg.OrgID,
		"api_key_last4":   last4(cfg.APIKey),
		"app_key_last4":   last4(cfg.AppKey),
		"allowed_scopes":  append([]string{}, cfg.AllowedScopes...), // [] rather than null when unset
		"request_timeout": int64(cfg.requestTimeout().Seconds()),
		"tidy_interval":   int64(cfg.TidyInterval.Seconds()),
		"watch_interval":  int64(cfg.watchInterval().Seconds()),
		"api_key_reserve": cfg.apiKeyReserve(),
		"last_use_lag":    int64(cfg.lastUseLag().Seconds()),
	}
	for k, v := range cfg.rootStatus() {
		data[k] = v
	}
	maps.Copy(data, b.auditConfigRead(cfg))
	resp := &logical.Response{Data: data}
	if msg := cfg.rootEndWarning(time.Now()); msg != "" {
		resp.AddWarning(msg)
	}
	return resp, nil
}

func (b *datadogBackend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.rootLock.Lock()
	defer b.rootLock.Unlock()
	b.credsLock.Lock() // waits for the creds requests in flight
	defer b.credsLock.Unlock()
	previous, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	cfg := &datadogConfig{Site: defaultSite, TidyInterval: defaultTidyInterval}
	if previous != nil {
		copied := *previous
		cfg = &copied
	}
	if v, ok := d.GetOk("api_key"); ok {
		cfg.APIKey = strings.TrimSpace(v.(string))
	}
	if msg := cfg.setRoot(d); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	if v, ok := d.GetOk("site"); ok {
		cfg.Site = strings.ToLower(strings.TrimSpace(v.(string)))
	}
	if v, ok := d.GetOk("api_url"); ok {
		cfg.APIURL = strings.TrimRight(strings.TrimSpace(v.(string)), "/")
	}
	if v, ok := d.GetOk("allowed_scopes"); ok {
		cfg.AllowedScopes = normalizeScopes(v.([]string))
	}
	if v, ok := d.GetOk("request_timeout"); ok {
		cfg.RequestTimeout = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("tidy_interval"); ok {
		cfg.TidyInterval = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("last_use_lag"); ok {
		lag := time.Duration(v.(int)) * time.Second
		if lag < 0 {
			return logical.ErrorResponse("last_use_lag must not be negative"), nil
		}
		cfg.LastUseLag = &lag
	}
	if v, ok := d.GetOk("api_key_reserve"); ok {
		reserve := v.(int)
		if reserve < 0 {
			return logical.ErrorResponse("api_key_reserve must not be negative (0 leaves no API key free for people)"), nil
		}
		cfg.APIKeyReserve = &reserve
	}
	if v, ok := d.GetOk("root_scopes"); ok {
		cfg.RootScopes = normalizeScopes(v.([]string))
	}
	if v, ok := d.GetOk("rotation_period"); ok {
		cfg.RotationPeriod = time.Duration(v.(int)) * time.Second
	}
	if msg := cfg.setWatchInterval(d); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	if msg := auditConfigWrite(cfg, d); msg != "" {
		return logical.ErrorResponse(msg), nil
	}

	switch {
	case cfg.APIKey == "" && cfg.AccessToken == "":
		return logical.ErrorResponse("api_key is required: the Datadog API key of the organisation (optional only with an access_token root)"), nil
	case cfg.AppKey == "" && cfg.AccessToken == "":
		return logical.ErrorResponse("app_key is required: a Datadog application key of the identity that will own issued keys " +
			"(or access_token with service_account_id: a service access token of that service account)"), nil
	case !slices.Contains(datadogSites(), cfg.Site):
		return logical.ErrorResponse("site %q is not a Datadog site; allowed: %s", cfg.Site, strings.Join(datadogSites(), ", ")), nil
	case cfg.RequestTimeout < 0 || cfg.RequestTimeout > maxRequestTimeout || cfg.RequestTimeout > 0 && cfg.RequestTimeout < time.Second:
		return logical.ErrorResponse("request_timeout %s is not allowed: give between 1s and %s (0 for the default %s)", cfg.RequestTimeout, maxRequestTimeout, defaultRequestTimeout), nil
	case cfg.TidyInterval < 0:
		return logical.ErrorResponse("tidy_interval must not be negative (0 turns periodic tidy off)"), nil
	case cfg.RotationPeriod < 0 || cfg.RotationPeriod > 0 && cfg.RotationPeriod < minRotationPeriod:
		return logical.ErrorResponse("rotation_period %s is not allowed: give at least %s (the engine checks every minute), or 0 to rotate only on request", cfg.RotationPeriod, minRotationPeriod), nil
	}
	if msg := cfg.rootScopesProblem(); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	if cfg.APIURL != "" {
		if _, _, err := parseAPIURL(cfg.APIURL); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}

	client, err := b.newClient(cfg, b.Logger())
	if err != nil {
		return nil, err
	}
	owner, resp, err := verifyKeys(ctx, client, cfg)
	if resp != nil || err != nil {
		return resp, err
	}
	cfg.OwnerID, cfg.OwnerHandle, cfg.OrgID = owner.ID, owner.Handle, owner.OrgID
	if cfg.AccessToken != "" && owner.ID != cfg.ServiceAccountID {
		return logical.ErrorResponse("access_token belongs to user %s, not to service_account_id %s", owner.ID, cfg.ServiceAccountID), nil
	}
	var warnings []string
	if cfg.RootKeyID == "" || cfg.rootScopesUnknown() {
		// Known now, the root's id is shown on read; a token's expiry and
		// scopes bound what the engine may issue (token_root.go). Not
		// knowing them stops only rotation.
		identified, err := b.newClient(cfg, b.Logger())
		if err != nil {
			return nil, err
		}
		lookup, cancel := context.WithTimeout(ctx, checkTimeout)
		root, scopes, err := identifyRoot(lookup, identified, cfg)
		cancel()
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("config/rotate-root will not work until this is fixed: %v", err))
		} else {
			cfg.RootKeyID, cfg.RootKeyName, cfg.RootExpiresAt = root.ID, root.Name, root.ExpiresAt
			if cfg.tokenRoot() {
				cfg.RootTokenScopes = scopes
			}
		}
	}
	if cfg.tokenRoot() && len(cfg.RootScopes) > 0 {
		if err := rotationScopesProblem(cfg.RootTokenScopes, cfg.RootScopes); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	rootWarnings, err := b.rootRoleWarnings(ctx, req.Storage, cfg)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, rootWarnings...)

	if previous != nil && !previous.sameIdentity(cfg) {
		next := &successor{cfg: cfg}
		// The client must know whose keys are its own to pick endpoints.
		if next.client, err = b.newClient(cfg, b.Logger()); err != nil {
			return nil, err
		}
		next.perms, err = next.client.RolePermissions(ctx, owner.RoleIDs)
		switch {
		case refused(err):
			next.perms = nil // Datadog will not say: the probes alone decide
		case err != nil:
			return nil, fmt.Errorf("error reading the permissions of the new identity: %w", err)
		}
		resp, stranded, err := b.checkStranded(ctx, req, previous, next, d.Get("force").(bool))
		if resp != nil || err != nil {
			return resp, err
		}
		warnings = append(warnings, stranded...)
	}

	// A root credential a rotation made, replaced by the operator's, is
	// deleted once config no longer holds it; its WAL entry makes the
	// rollback retry if that fails.
	var retired string
	if previous != nil && b.madeRoot(previous) && previous.rootSecret() != cfg.rootSecret() {
		step := rootStep{Object: previous.rootObject(), CreatedAt: time.Now(), Ends: time.Now()}
		if retired, err = framework.PutWAL(ctx, req.Storage, walRootDelete, &step); err != nil {
			return nil, err
		}
	}
	entry, err := logical.StorageEntryJSON(configPath, cfg)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	b.reset()
	if retired != "" {
		if err := b.retireRoot(ctx, previous); err != nil {
			warnings = append(warnings, err.Error()+"; the engine retries every minute")
		} else if err := framework.DeleteWAL(ctx, req.Storage, retired); err != nil {
			b.Logger().Warn("could not remove a rotation's WAL entry; the rollback will", "error", err)
		}
	}
	if len(warnings) == 0 {
		return nil, nil
	}
	return &logical.Response{Warnings: warnings}, nil
}

// verifyKeys checks each key against Datadog so that a bad key is refused at
// write time, naming the key that failed, instead of at the first creds read.
func verifyKeys(ctx context.Context, client datadogAPI, cfg *datadogConfig) (identity, *logical.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	rejected := func(err error) bool {
		s := httpStatus(err)
		return s == http.StatusUnauthorized || s == http.StatusForbidden
	}
	root := "app_key"
	if cfg.AccessToken != "" {
		root = "access_token"
	}
	// An access token authenticates alone: the API key, optional then, is
	// checked only when given. Both checks go to Datadog together.
	var keyErr, ownerErr error
	var owner identity
	inParallel(2, func(i int) {
		switch {
		case i == 0 && cfg.APIKey != "":
			keyErr = client.CheckAPIKey(ctx)
		case i == 1:
			owner, ownerErr = client.CurrentUser(ctx)
		}
	})
	if cfg.APIKey != "" {
		if err := keyErr; err != nil {
			if errors.Is(err, errRedirectRefused) {
				return identity{}, logical.ErrorResponse("api_url %s answered with a redirect (%v); set api_url to the address that answers", cfg.baseURL(), err), nil
			}
			if rejected(err) {
				return identity{}, logical.ErrorResponse("api_key was rejected by Datadog at %s (%v); check the key and the site", cfg.baseURL(), err), nil
			}
			return identity{}, nil, fmt.Errorf("error validating api_key with Datadog at %s: %w", cfg.baseURL(), err)
		}
	}
	if err := ownerErr; err != nil {
		if errors.Is(err, errRedirectRefused) {
			return identity{}, logical.ErrorResponse("api_url %s answered with a redirect (%v); set api_url to the address that answers", cfg.baseURL(), err), nil
		}
		if rejected(err) {
			return identity{}, logical.ErrorResponse("%s was rejected by Datadog at %s (%v); check it is live and belongs to the same organisation as api_key", root, cfg.baseURL(), err), nil
		}
		return identity{}, nil, fmt.Errorf("error validating %s with Datadog at %s: %w", root, cfg.baseURL(), err)
	}
	return owner, nil, nil
}

func (b *datadogBackend) pathConfigDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.rootLock.Lock()
	defer b.rootLock.Unlock()
	b.credsLock.Lock() // waits for the creds requests in flight
	defer b.credsLock.Unlock()
	previous, err := getConfig(ctx, req.Storage)
	if err != nil || previous == nil {
		return nil, err
	}
	resp, warnings, err := b.checkStranded(ctx, req, previous, nil, d.Get("force").(bool))
	if resp != nil || err != nil {
		return resp, err
	}
	// Without config nothing could delete a root credential the engine
	// made: it goes first, or config stays.
	if b.madeRoot(previous) {
		if err := b.retireRoot(ctx, previous); err != nil {
			return nil, fmt.Errorf("config not deleted: %w", err)
		}
	}
	if err := req.Storage.Delete(ctx, configPath); err != nil {
		return nil, err
	}
	b.reset()
	if len(warnings) == 0 {
		return nil, nil
	}
	return &logical.Response{Warnings: warnings}, nil
}

// successor is the configuration about to replace the current one, with a
// client acting as it and the permissions its roles grant (nil when
// Datadog would not say).
type successor struct {
	cfg    *datadogConfig
	client datadogAPI
	perms  map[string]bool
}

// checkStranded refuses a config change (or, with next nil, a delete)
// after which the engine could no longer delete keys that outstanding
// leases or WAL entries hold, unless forced. Then it returns warnings
// naming each key left behind, and logs them.
func (b *datadogBackend) checkStranded(ctx context.Context, req *logical.Request, previous *datadogConfig, next *successor, force bool) (*logical.Response, []string, error) {
	all, err := records(ctx, req.Storage)
	if err != nil {
		return nil, nil, err
	}
	var leases, pending, shared int
	var left []datadogObject
	reasons := map[string]bool{}
	probed := map[string]error{} // by kind and owner: can the new identity reach such objects
	for _, rec := range all {
		var stranded bool
		for _, o := range rec.Objects {
			reason, err := b.unreachable(ctx, o, previous, next, probed)
			if err != nil {
				return nil, nil, err
			}
			if reason != "" {
				stranded, reasons[reason] = true, true
				left = append(left, o)
			}
		}
		switch {
		case !stranded:
		case !rec.Issued:
			pending++
		case rec.Shared != nil:
			shared++
		default:
			leases++
		}
	}
	if leases+pending+shared == 0 {
		return nil, nil, nil
	}

	change := "changed"
	if next == nil {
		change = "deleted"
	}
	var holders []string
	for _, h := range []struct {
		n           int
		one, plenty string
	}{{leases, "lease", "leases"}, {shared, "shared API key record", "shared API key records"},
		{pending, "write-ahead log entry", "write-ahead log entries"}} {
		if h.n > 0 {
			holders = append(holders, plural(h.n, h.one, h.plenty))
		}
	}
	held := strings.Join(holders, " and ") + " hold"
	if leases+pending+shared == 1 {
		held += "s"
	}
	why := strings.Join(slices.Sorted(maps.Keys(reasons)), "; ")
	if !force {
		return logical.ErrorResponse("config not %s: %s Datadog keys that the engine could no longer delete (%s). "+
			"Revoke those leases first (vault lease revoke -prefix %screds/), or repeat with force=true to leave the keys "+
			"behind: they would stay valid in Datadog", change, held, why, req.MountPoint), nil, nil
	}
	warnings := []string{fmt.Sprintf("config %s with force=true: %s Datadog keys that the engine can no longer delete (%s); "+
		"they stay valid in Datadog until deleted there, and their leases fail to revoke until a config that reaches them is written", change, held, why)}
	for _, o := range left {
		warnings = append(warnings, fmt.Sprintf("left behind: Datadog %s %s (%s) of user %s, in %s", describeKind(o.Kind), o.ID, o.Name, o.Owner, o.Home))
		b.Logger().Warn("config "+change+" with force=true leaves a Datadog key behind", "kind", o.Kind, "id", o.ID, "name", o.Name, "owner", o.Owner, "org", o.Home.OrgID)
	}
	return nil, warnings, nil
}

// unreachable says why next could not delete o, or "" if it could: it
// must be in the same organisation, hold the permission that deleting o
// takes (as far as its roles tell), and be able to read one object of o's
// kind and owner where revocation would delete it (which also catches a
// key whose own scopes leave the permission out).
func (b *datadogBackend) unreachable(ctx context.Context, o datadogObject, previous *datadogConfig, next *successor, probed map[string]error) (string, error) {
	if next == nil {
		return "without config nothing can delete them", nil
	}
	if home := cmp.Or(o.Home.OrgID, previous.OrgID); home != "" && home != next.cfg.OrgID {
		return fmt.Sprintf("they live in organisation %s, the new keys belong to organisation %s", home, next.cfg.OrgID), nil
	}
	if need := deletePermission(o, next.cfg.OwnerID); next.perms != nil && !next.perms[need] {
		return fmt.Sprintf("user %s lacks %s, which deleting %ss of user %s takes", next.cfg.OwnerID, need, describeKind(o.Kind), o.Owner), nil
	}
	class := o.Kind + "/" + o.Owner
	probe, done := probed[class]
	if !done {
		if o.ID != "" {
			_, probe = next.client.Exists(ctx, o)
		} else {
			_, probe = next.client.FindByName(ctx, o, time.Time{})
		}
		if errors.Is(probe, errNotFound) {
			probe = nil
		}
		if probe != nil && !refused(probe) {
			return "", fmt.Errorf("error checking whether the new identity can delete Datadog %s %s: %w", describeKind(o.Kind), o.ID, probe)
		}
		probed[class] = probe
	}
	if probe != nil {
		return fmt.Sprintf("user %s may not reach %ss of user %s: %v", next.cfg.OwnerID, describeKind(o.Kind), o.Owner, probe), nil
	}
	return "", nil
}

// refused reports whether Datadog refused the identity itself, rather than
// failed.
func refused(err error) bool {
	s := httpStatus(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden || errors.Is(err, errNotVisible)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// datadogSites is the client's own list of Datadog sites, so that the plugin
// accepts exactly what the client can reach.
func datadogSites() []string {
	var sites []string // the client's list names one site twice
	for _, site := range datadog.NewConfiguration().Servers[0].Variables["site"].EnumValues {
		if !slices.Contains(sites, site) {
			sites = append(sites, site)
		}
	}
	return sites
}

// parseAPIURL checks an api_url and splits it into the host and scheme that
// client-go overrides. Plain http would expose the keys on the network, so it
// is allowed only for loopback hosts such as a local emulator.
func parseAPIURL(raw string) (host, scheme string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "", "", fmt.Errorf("api_url %q is not an absolute URL such as https://api.datadoghq.com", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("api_url %q must be a scheme and host only, without path, query or credentials", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", "", fmt.Errorf("api_url %q must use https: http:// is allowed only for loopback hosts (127.0.0.1, ::1, localhost)", raw)
		}
	default:
		return "", "", fmt.Errorf("api_url %q must use https (or http for a loopback host)", raw)
	}
	return u.Host, u.Scheme, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func last4(secret string) string {
	if len(secret) < 4 {
		return ""
	}
	return secret[len(secret)-4:]
}

func stringsToAny(values []string) []interface{} {
	out := make([]interface{}, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}

// checkTimeout bounds the Datadog calls that check an operator's config or
// role write, retries included: a wrong api_url or an outage should be
// reported while the operator waits, not after Vault's 90 s request limit.
const checkTimeout = 20 * time.Second

// errNotConfigured is the user-facing answer when config was never written.
var errNotConfigured = errors.New("the Datadog secrets engine is not configured: write its config path first")

const pathConfigHelpSyn = `Configure the Datadog identity and site the engine uses.`

const pathConfigHelpDesc = `
The engine acts as this identity in every Datadog call. Its root credential
is an application key of a user or service account (app_key, with the
organisation's api_key), or instead a service access token of the service
account service_account_id (access_token, sent as Authorization: Bearer;
api_key is then optional, needed only by roles with api_key_mode static).
Application keys and personal access tokens of application_key and
personal_access_token roles are owned by that identity, the credentials of
service account roles by the role's service account, and API keys are
created in its organisation.

On write, the credentials are checked against Datadog (a rejected one gives
an error naming it) and the identity's user id, handle and organisation id
are stored, with the root credential's id in Datadog when it can be found
(config/rotate-root needs it; a warning says when it cannot). Updates change
only the fields given. A write that changes the identity, or a delete, is
refused while leases or write-ahead log entries hold Datadog keys that the
engine could then no longer delete, unless force=true (then warnings name
each key left behind). The configuration is stored seal-wrapped.

config/rotate-root replaces the root credential with one only Vault knows,
scoped to root_scopes; rotation_period makes the engine do it by itself. A
root credential the engine made is deleted when config is replaced or
deleted, or the mount disabled.

An access_token root is held to Datadog's rules for access tokens: a call
made with one cannot create or update application keys, and creates tokens
only within its own scopes and expiry. So under it roles issue
service_access_token credentials (within root_token_scopes, their expiry and
leases ending before the root's) and api_key credentials; role writes and
creds of the other types are refused with a 400. Its expiry,
root_expires_at, is the engine's hard end: a rotation replaces the token's
secret, not its end date. The engine warns from 14 days before it (its log,
config reads and writes, rotations); to move it, write config a new
access_token made by another identity (a person, or another service
account). An app_key root has no such end and issues every type.

Use site for a Datadog region (datadoghq.eu, us3.datadoghq.com, ...), or api_url
for a proxy or a local emulator.

With audit_events=true, the engine posts a Datadog event (POST /api/v1/events,
with the API key) for every credential it issues, renews or deletes, naming
the role, the Vault display name and entity, the keys' ids and names, the
lease's expiry and the reason, never a secret. Events are posted in the
background: a failure never fails the Vault request; it is logged, and
counted in audit_events_failed (audit_events_sent counts the others, both
since the plugin started on this node).

A read returns site, api_url, owner_id, owner_handle and org_id (the
identity); root_credential_type, root_key_id, root_key_name,
service_account_id, root_expires_at (an access_token root's hard end),
root_scopes, root_token_scopes, rotation_period (in seconds), last_rotation
and next_rotation (the root credential);
api_key_last4, app_key_last4 and access_token_last4 (api_key, app_key and
access_token are write-only: reads return only their last four characters);
allowed_scopes, and request_timeout, tidy_interval and watch_interval in
seconds; audit_events, audit_events_sent and audit_events_failed.

watch_interval (default 5m, at least 1m, 0 turns it off) is how often the
engine reads its leases' credentials from Datadog: one Datadog flagged as
leaked, or one unused for its role's idle_ttl, is deleted at once, and its
lease's renewals are refused (see watch/status).
`
