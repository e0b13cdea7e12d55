// Package acceptance is the engine's acceptance suite: end-to-end scenarios
// through a real Vault server against any Datadog — the project's emulator
// by default, a real organisation when DD_API_KEY, DD_APP_KEY and DD_SITE
// are set — that checks the facts the emulator assumes, cleans up after
// itself by name, and can record what it sees (cmd/datadog-acceptance,
// make acceptance; README, "Testing against a real Datadog organisation").
package acceptance

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
)

// Options configure a run. The Datadog it runs against comes from the
// environment (Getenv): see target.go.
type Options struct {
	VaultBin      string // the vault binary (scripts/vault-bin.sh finds or builds it)
	Plugin        string // the plugin binary
	PluginVersion string // the version it was built with (Vault checks it)
	StateDir      string // where runs keep their journals, for a later sweep
	WorkDir       string // Vault's directory; "" for a temporary one, removed after a clean run
	Only          []string
	Skip          []string
	HoldAfter     string        // wait after this scenario until interrupted (tests of interruption)
	LastUseWait   time.Duration // how long to wait for Datadog to report a key's use
	Getenv        func(string) string
	Log           io.Writer
	// CleanupCtx bounds the clean-up after an interruption; cancel it (a
	// second Ctrl-C) to stop cleaning up.
	CleanupCtx context.Context
}

// Report is what a run found.
type Report struct {
	RunID, Prefix, Target, Mode string
	Scenarios                   []cassette.Scenario
	Facts                       []cassette.Fact
	Calls                       int
	ByCaller                    map[string]int
	RateLimits                  []rateLimitSeen
	LeftAfterSweep              int
	Duration                    time.Duration
	Interrupted                 bool
	RecordDir                   string
	Problems                    []string // set-up, clean-up or sweep problems
	WorkDir                     string   // kept when the run failed
}

// OK reports whether every scenario that ran passed and nothing was left.
func (r *Report) OK() bool {
	if r.Interrupted || len(r.Problems) > 0 || r.LeftAfterSweep > 0 {
		return false
	}
	for _, s := range r.Scenarios {
		if s.Result == "fail" || s.Result == "interrupted" {
			return false
		}
	}
	return true
}

// mount is one mount of the engine the run made.
type mount struct {
	path   string
	marker string
}

// issued is a credential the engine issued, as the creds answer gave it.
type issued struct {
	mount, role, scenario string
	leaseID               string
	leaseDuration         int
	Name                  string
	AppKey, AppKeyID      string
	APIKey, APIKeyID      string
	Token, TokenID        string
	ServiceAccount        string
	ExpiresAt             time.Time
	Scopes                []string
}

// madeObject is something the suite made itself, deleted at clean-up.
type madeObject struct {
	kind, id, name, owner string
	by                    creds // who may delete it
}

type suite struct {
	opts     Options
	t        *target
	runID    string
	prefix   string
	red      *redactor
	px       *proxy
	dd       *dd
	vault    *vaultServer
	vc       *api.Client
	journal  *journal
	facts    *facts
	selfID   string
	rec      string // DD_RECORD
	logw     io.Writer
	waitLong time.Duration // how long Datadog may take to apply a change
	pollFast time.Duration

	tokenScopes []string // the given token's scopes, when known

	mu       sync.Mutex
	leases   map[string]*issued // live leases
	made     []madeObject
	owners   map[string]string // name prefix → scenario, for leftovers
	results  map[string]*cassette.Scenario
	stopUsed func()

	// State shared between scenarios.
	main, tok, watchMount *mount
	mainRoot              string // the main mount's first root key (the suite made it)
	tokenRoot             struct {
		id, secret string
		expires    time.Time
		scopes     []string
	}
	credsByScenario map[string]*issued
	watchState      *watchRun
}

// Run runs the suite.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	start := time.Now()
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.CleanupCtx == nil {
		opts.CleanupCtx = context.Background()
	}
	if opts.LastUseWait == 0 {
		opts.LastUseWait = 2 * time.Minute
	}
	t, err := targetFromEnv(opts.Getenv)
	if err != nil {
		return nil, err
	}
	defer t.close()

	runID := newRunID()
	s := &suite{opts: opts, t: t, runID: runID, prefix: prefixOf(runID), facts: newFacts(), logw: opts.Log,
		leases: map[string]*issued{}, owners: map[string]string{}, results: map[string]*cassette.Scenario{},
		credsByScenario: map[string]*issued{}, rec: opts.Getenv(EnvRecord)}
	s.red = newRedactor(s.prefix)
	for _, secret := range []string{t.given.APIKey, t.given.AppKey, t.given.AccessToken} {
		s.red.Secret(secret)
	}
	s.waitLong, s.pollFast = 90*time.Second, 2*time.Second
	pace := 200 * time.Millisecond
	if t.mode == "emulator" {
		s.waitLong, s.pollFast, pace = 5*time.Second, 100*time.Millisecond, 0
	}
	rep = &Report{RunID: runID, Prefix: s.prefix, Target: t.describe(), Mode: t.mode, RecordDir: s.rec}
	s.logf("run %s: every object it makes is named %s…", runID, s.prefix)
	s.logf("Datadog: %s", t.describe())

	recBase := "https://api." + t.site
	s.px, err = startProxy(t.apiURL, s.red, s.rec != "", recBase)
	if err != nil {
		return rep, err
	}
	defer s.px.close()
	if s.dd, err = newDD(s.px.URL, t.site, pace, s.px.waitRateLimit); err != nil {
		return rep, err
	}

	// The journal first: from here on, anything the run makes can be
	// found by a sweep, whatever becomes of this process.
	s.journal, err = newJournal(opts.StateDir, journalState{RunID: runID, Prefix: s.prefix,
		StartedAt: start.UTC().Format(time.RFC3339), Target: t.apiURL.String()})
	if err != nil {
		return rep, fmt.Errorf("writing the run's journal in %s: %w", opts.StateDir, err)
	}
	s.logf("journal: %s (make acceptance-sweep RUN=%s deletes what a killed run left)", s.journal.path, s.prefix)

	setupStart := time.Now()
	setupErr := s.setup(ctx)
	setupRow := s.row("setup")
	setupRow.Result, setupRow.Calls, setupRow.Seconds = "pass", s.px.callsOf("setup"), time.Since(setupStart).Seconds()
	setupRow.Detail = "the user identified; Vault started, the plugin registered"
	if s.t.mode == "emulator" {
		setupRow.Detail += "; in the emulator, a service account and its token made, as a user would"
	}
	if setupErr != nil {
		setupRow.Result, setupRow.Detail = "fail", s.red.scrub(setupErr.Error())
	}
	if setupErr == nil {
		s.runScenarios(ctx)
	} else {
		rep.Problems = append(rep.Problems, "setup: "+setupErr.Error())
		s.logf("setup failed: %v", setupErr)
	}
	rep.Interrupted = ctx.Err() != nil

	// Clean-up and the sweep run even after an interruption, with their
	// own deadline.
	cctx, cancel := context.WithTimeout(opts.CleanupCtx, 4*time.Minute)
	defer cancel()
	for _, p := range s.cleanup(cctx) {
		rep.Problems = append(rep.Problems, "clean-up: "+p)
	}
	left, problems := s.finalSweep(cctx)
	rep.LeftAfterSweep = left
	for _, p := range problems {
		rep.Problems = append(rep.Problems, "sweep: "+p)
	}
	s.vault.stop()

	rep.Scenarios = s.rows()
	rep.Facts = s.facts.results()
	rep.Calls, rep.ByCaller = s.px.totals()
	rep.RateLimits = s.px.rateLimits()
	rep.Duration = time.Since(start)
	if s.rec != "" {
		if err := s.writeRecording(rep, start); err != nil {
			rep.Problems = append(rep.Problems, "recording: "+err.Error())
		} else {
			s.logf("recording written to %s", s.rec)
		}
	}
	// The journal goes once the sweep found nothing left, whatever the
	// scenarios did; otherwise acceptance-sweep needs it.
	if left == 0 && len(problems) == 0 {
		s.journal.remove()
	}
	if rep.OK() {
		if opts.WorkDir == "" && s.vault != nil {
			os.RemoveAll(s.vault.dir)
		}
	} else if s.vault != nil {
		rep.WorkDir = s.vault.dir
	}
	return rep, nil
}

func newRunID() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.logw, format+"\n", args...)
}

// setup identifies the user, prepares what a user would have prepared
// (against the emulator), and starts Vault.
func (s *suite) setup(ctx context.Context) error {
	s.px.setScenario("setup")
	id, a := s.dd.currentUser(ctx, s.t.given.keys())
	if a.Err != nil {
		return fmt.Errorf("the keys of %s and %s are refused by Datadog (GET /api/v2/current_user: %s)", EnvAPIKey, EnvAppKey, a)
	}
	s.selfID = id
	if s.t.mode == "emulator" {
		if err := s.prepareEmulatorUser(ctx); err != nil {
			return err
		}
	}
	if sa := s.t.given.ServiceAccountID; sa != "" {
		s.journal.addServiceAccount(sa)
	}
	if s.t.given.AccessToken != "" {
		s.red.Secret(s.t.given.AccessToken)
		// The token's own scopes and expiry bound what it may make.
		tokens, a := s.dd.serviceAccountTokens(ctx, s.t.given.keys(), s.t.given.ServiceAccountID, "")
		if a.Status != http.StatusOK {
			tokens, _ = s.dd.serviceAccountTokens(ctx, creds{Bearer: s.t.given.AccessToken}, s.t.given.ServiceAccountID, "")
		}
		if info, ok := findToken(tokens, s.t.given.AccessToken); ok {
			s.tokenScopes = info.Scopes
			if info.ExpiresAt != nil {
				s.tokenRoot.expires = *info.ExpiresAt
			}
		}
	}
	dir := s.opts.WorkDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "datadog-acceptance-"); err != nil {
			return err
		}
	}
	v, err := startVault(ctx, s.opts.VaultBin, s.opts.Plugin, s.opts.PluginVersion, dir)
	s.vault = v
	if err != nil {
		return fmt.Errorf("starting Vault: %w", err)
	}
	s.vc, err = v.client()
	if err != nil {
		return err
	}
	s.logf("Vault: %s (%s), plugin %s", v.addr, s.opts.VaultBin, s.opts.PluginVersion)
	return nil
}

// tokenRootScopes are the scopes of the service access token the suite
// hands the engine as a token root (what a user would give it: the
// engine's own and what its roles grant).
var tokenRootScopes = []string{"api_keys_delete", "api_keys_read", "api_keys_write", "service_account_write",
	"user_access_read", "user_app_keys", "dashboards_read", "monitors_read"}

// prepareEmulatorUser makes, in the emulator, what a user of a real
// organisation would hand the suite: a service account with the Datadog
// Admin Role and a service access token of it. They carry the run's
// prefix, so the sweep disables and revokes them.
func (s *suite) prepareEmulatorUser(ctx context.Context) error {
	cctx := s.dd.ctx(ctx, s.t.given.keys())
	roles, resp, err := s.dd.normal.roles.ListRoles(cctx, *newListRolesFilter("Datadog Admin Role"))
	if err != nil || len(roles.GetData()) == 0 {
		return fmt.Errorf("finding the Datadog Admin Role: %s", answerOf(resp, err))
	}
	sa, a := s.createServiceAccount(ctx, s.prefix+"sa", roles.GetData()[0].GetId())
	if a.Err != nil {
		return fmt.Errorf("making the service account: %s", a)
	}
	s.own(s.prefix+"sa", "setup")
	s.journal.addServiceAccount(sa)
	s.t.given.ServiceAccountID = sa
	id, secret, a := s.dd.createSAT(ctx, s.t.given.keys(), sa, s.prefix+"given-token", tokenRootScopes, nil)
	if a.Err != nil {
		return fmt.Errorf("making the service account's token: %s", a)
	}
	s.red.Secret(secret)
	s.own(s.prefix+"given-token", "setup")
	s.track(madeObject{kind: objSAT, id: id, name: s.prefix + "given-token", owner: sa, by: s.t.given.keys()})
	s.t.given.AccessToken = secret
	s.tokenScopes = slices.Clone(tokenRootScopes)
	s.track(madeObject{kind: objServiceAccount, id: sa, name: s.prefix + "sa", by: s.t.given.keys()})
	return nil
}

// own notes which scenario made the objects whose names start with
// prefix, to attribute leftovers.
func (s *suite) own(prefix, scenario string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owners[prefix] = scenario
}

// ownerOf attributes a name to a scenario: the longest prefix noted.
func (s *suite) ownerOf(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, who := "", "sweep"
	for p, scenario := range s.owners {
		if strings.HasPrefix(name, p) && len(p) > len(best) {
			best, who = p, scenario
		}
	}
	return who
}

func (s *suite) track(o madeObject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.made = append(s.made, o)
}

// --- Vault ---

func vaultStatus(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func vaultMessage(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return strings.Join(re.Errors, "; ")
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// write writes a Vault path; its error names the path, never the data.
func (s *suite) write(ctx context.Context, path string, data map[string]any) (*api.Secret, error) {
	secret, err := s.vc.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return secret, fmt.Errorf("vault write %s: %s", path, s.red.scrub(vaultMessage(err)))
	}
	return secret, nil
}

func (s *suite) read(ctx context.Context, path string) (*api.Secret, error) {
	secret, err := s.vc.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vault read %s: %s", path, s.red.scrub(vaultMessage(err)))
	}
	if secret == nil {
		return nil, fmt.Errorf("vault read %s: nothing there", path)
	}
	return secret, nil
}

// expectRefused writes a path that must be refused with HTTP 400 saying
// each of want.
func (s *suite) expectRefused(ctx context.Context, path string, data map[string]any, want ...string) error {
	_, err := s.vc.Logical().WriteWithContext(ctx, path, data)
	if err == nil {
		return fmt.Errorf("vault write %s was accepted; want HTTP 400", path)
	}
	msg := s.red.scrub(vaultMessage(err))
	if vaultStatus(err) != http.StatusBadRequest {
		return fmt.Errorf("vault write %s: got %d (%s), want HTTP 400", path, vaultStatus(err), msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			return fmt.Errorf("vault write %s was refused without saying %q: %s", path, w, msg)
		}
	}
	return nil
}

// newMount enables the engine at a path named after the run.
func (s *suite) newMount(ctx context.Context, suffix string) (*mount, error) {
	path := "acc-" + s.runID + suffix
	if err := s.journal.addMount(path); err != nil {
		return nil, err
	}
	if err := s.vc.Sys().MountWithContext(ctx, path, &api.MountInput{Type: pluginName}); err != nil {
		return nil, fmt.Errorf("enabling the engine at %s: %s", path, vaultMessage(err))
	}
	m := &mount{path: path}
	return m, nil
}

// roleName is the name of a role of the run: acc-<run>-<suffix>, so that
// everything the engine names after it (vault-<role>-…, shared API keys
// vault-<role>-shared-…) starts with the run's prefix.
func (s *suite) roleName(suffix string) string { return "acc-" + s.runID + "-" + suffix }

// writeRole writes a role; its credentials are named vault-<role>-….
func (s *suite) writeRole(ctx context.Context, m *mount, suffix, scenario string, fields map[string]any) (string, error) {
	name := s.roleName(suffix)
	s.own("vault-"+name+"-", scenario)
	data := map[string]any{"name_template": "vault-{{ .RoleName }}"}
	for k, v := range fields {
		data[k] = v
	}
	_, err := s.write(ctx, m.path+"/roles/"+name, data)
	return name, err
}

var reEngineSuffix = regexp.MustCompile(`-([0-9a-f]{16})[a-z2-7]{16}$`)

// issue reads (or, with params, writes) creds/<role>.
func (s *suite) issue(ctx context.Context, m *mount, role, scenario string, params map[string]any) (*issued, error) {
	path := m.path + "/creds/" + role
	var secret *api.Secret
	var err error
	if params == nil {
		secret, err = s.vc.Logical().ReadWithContext(ctx, path)
	} else {
		secret, err = s.vc.Logical().WriteWithContext(ctx, path, params)
	}
	if secret != nil {
		for _, f := range []string{"application_key", "api_key", "access_token"} {
			if v, _ := secret.Data[f].(string); v != "" {
				s.red.Secret(v)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vault read %s: %s", path, s.red.scrub(vaultMessage(err)))
	}
	if secret == nil || secret.LeaseID == "" {
		return nil, fmt.Errorf("vault read %s: no lease", path)
	}
	str := func(f string) string { v, _ := secret.Data[f].(string); return v }
	c := &issued{mount: m.path, role: role, scenario: scenario, leaseID: secret.LeaseID, leaseDuration: secret.LeaseDuration,
		Name: str("name"), AppKey: str("application_key"), AppKeyID: str("application_key_id"),
		APIKey: str("api_key"), APIKeyID: str("api_key_id"), Token: str("access_token"), TokenID: str("access_token_id"),
		ServiceAccount: str("service_account_id")}
	if raw, ok := secret.Data["scopes"].([]any); ok {
		for _, sc := range raw {
			c.Scopes = append(c.Scopes, fmt.Sprint(sc))
		}
	}
	if e := str("expires_at"); e != "" {
		c.ExpiresAt, _ = time.Parse(time.RFC3339, e)
	}
	s.mu.Lock()
	s.leases[c.leaseID] = c
	s.mu.Unlock()
	if !strings.HasPrefix(c.Name, s.prefix) {
		return c, fmt.Errorf("the credential is named %q, without the run's prefix %s", c.Name, s.prefix)
	}
	if err := s.learnMarker(m, c.Name); err != nil {
		return c, err
	}
	return c, nil
}

// learnMarker reads a mount's marker from the name of a credential it
// issued, and writes it to the journal before anything could make a root
// key named after it.
func (s *suite) learnMarker(m *mount, name string) error {
	match := reEngineSuffix.FindStringSubmatch(name)
	if match == nil {
		return fmt.Errorf("the credential name %q does not end with the engine's marker and record id", name)
	}
	if m.marker == match[1] {
		return nil
	}
	m.marker = match[1]
	s.red.Keep("vault-root-" + m.marker + "-")
	return s.journal.setMarker(m.path, m.marker)
}

// revoke revokes a lease (synchronously: the engine has deleted the
// credential when it returns).
func (s *suite) revoke(ctx context.Context, c *issued) error {
	if err := s.vc.Sys().RevokeWithContext(ctx, c.leaseID); err != nil {
		return fmt.Errorf("revoking %s: %s", c.leaseID, s.red.scrub(vaultMessage(err)))
	}
	s.mu.Lock()
	delete(s.leases, c.leaseID)
	s.mu.Unlock()
	return nil
}

// --- the credential as its consumer uses it ---

// consumer is how a consumer sends the credential: an access token as a
// bearer token; an application key with its API key (or the user's, for
// api_key_mode none); an API key alone.
func (s *suite) consumer(c *issued) creds {
	switch {
	case c.Token != "":
		return creds{Bearer: c.Token}
	case c.AppKey != "":
		apiKey := c.APIKey
		if apiKey == "" {
			apiKey = s.t.given.APIKey
		}
		return creds{APIKey: apiKey, AppKey: c.AppKey}
	}
	return creds{APIKey: c.APIKey}
}

// checkWorks makes a call in the credential's scope (dashboards_read; an
// API key: /api/v1/validate) and wants 200, waiting for a new key to start
// working in Datadog, which the emulator assumes is at once.
func (s *suite) checkWorks(ctx context.Context, c *issued, what string) error {
	call := func(probe bool) answer { return s.dd.readDashboards(ctx, s.consumer(c), probe) }
	if c.AppKey == "" && c.Token == "" {
		call = func(probe bool) answer { return s.dd.validateAPIKey(ctx, c.APIKey, probe) }
	}
	return s.checkNew(ctx, what, call)
}

// checkNew waits for a new credential to work and notes how long it took.
func (s *suite) checkNew(ctx context.Context, what string, call func(probe bool) answer) error {
	a, took, misses := waitFor(ctx, s.waitLong, s.pollFast, call, func(a answer) bool { return a.Status == http.StatusOK })
	if misses == 0 {
		s.facts.observe("new key works at once", true, what+": first call 200")
	} else {
		s.facts.observe("new key works at once", false, fmt.Sprintf("%s: refused %d times over %.1fs, then %s", what, misses, took.Seconds(), a))
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("%s does not work: a call in its scope got %s", what, a)
	}
	return nil
}

// checkOutOfScope makes a call outside the credential's scopes (an API
// key alone: any read) and wants 403.
func (s *suite) checkOutOfScope(ctx context.Context, c *issued, what string) error {
	var a answer
	if c.AppKey == "" && c.Token == "" {
		a = s.dd.readDashboards(ctx, creds{APIKey: c.APIKey}, false)
	} else {
		a = s.dd.readMonitors(ctx, s.consumer(c))
		s.facts.expectAnswer("out of scope: 403 Forbidden", a, http.StatusForbidden, "Forbidden")
	}
	if a.Status != http.StatusForbidden {
		return fmt.Errorf("%s: a call out of its scope got %s, want 403", what, a)
	}
	return nil
}

// checkTokenAlone sends an access token alone, as DD-APPLICATION-KEY.
func (s *suite) checkTokenAlone(ctx context.Context, c *issued, what string) error {
	a := s.dd.readDashboards(ctx, creds{AppKey: c.Token}, false)
	s.facts.observe("token alone in DD-APPLICATION-KEY works", a.Status == http.StatusOK, what+": "+a.String())
	if a.Status != http.StatusOK {
		return fmt.Errorf("%s sent alone as DD-APPLICATION-KEY got %s, want 200", what, a)
	}
	return nil
}

// checkRefused wants a revoked credential refused, waiting for Datadog
// to apply the deletion (the emulator assumes at once).
func (s *suite) checkRefused(ctx context.Context, c *issued, what string) error {
	var call func(probe bool) answer
	switch {
	case c.Token != "":
		call = func(probe bool) answer { return s.dd.readDashboards(ctx, creds{Bearer: c.Token}, probe) }
	case c.AppKey != "":
		// With the user's API key, so that only the application key decides.
		call = func(probe bool) answer {
			return s.dd.readDashboards(ctx, creds{APIKey: s.t.given.APIKey, AppKey: c.AppKey}, probe)
		}
	default:
		call = func(probe bool) answer { return s.dd.validateAPIKey(ctx, c.APIKey, probe) }
	}
	a, err := s.checkGone(ctx, what, call)
	if err != nil {
		return err
	}
	switch {
	case c.Token != "":
		s.facts.expectAnswer("revoked token as bearer: 401 Unauthorized", a, http.StatusUnauthorized, "Unauthorized")
		b := s.dd.readDashboards(ctx, creds{AppKey: c.Token}, false)
		s.facts.expectAnswer("revoked token in DD-APPLICATION-KEY: 403 Forbidden", b, http.StatusForbidden, "Forbidden")
	case c.AppKey != "":
		s.facts.expectAnswer("wrong application key: 403 Forbidden", a, http.StatusForbidden, "Forbidden")
	}
	return nil
}

// checkGone waits until a call with a deleted credential is refused.
func (s *suite) checkGone(ctx context.Context, what string, call func(probe bool) answer) (answer, error) {
	refused := func(a answer) bool { return a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden }
	a, took, misses := waitFor(ctx, s.waitLong, s.pollFast, call, refused)
	if misses == 0 {
		s.facts.observe("deleted key refused at once", true, what+": refused on the first call")
	} else {
		s.facts.observe("deleted key refused at once", false, fmt.Sprintf("%s: still accepted %d times over %.1fs after its deletion", what, misses, took.Seconds()))
	}
	if !refused(a) {
		return a, fmt.Errorf("%s still works after its deletion: %s", what, a)
	}
	return a, nil
}

// admin calls the emulator's own admin endpoints (emulator mode only).
func (s *suite) admin(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, s.px.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(cassette.HeaderCaller, "suite")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// --- clean-up ---

// cleanup revokes what is live, disables the mounts (the engine deletes
// what its leases held and the root keys it made) and deletes what the
// suite made itself.
func (s *suite) cleanup(ctx context.Context) []string {
	s.px.setScenario("cleanup")
	start := time.Now()
	var problems []string
	if s.stopUsed != nil {
		s.stopUsed()
	}
	if s.vc != nil {
		s.mu.Lock()
		live := make([]*issued, 0, len(s.leases))
		for _, c := range s.leases {
			live = append(live, c)
		}
		s.mu.Unlock()
		for _, c := range live {
			if err := s.revoke(ctx, c); err != nil {
				problems = append(problems, err.Error())
			}
		}
		for _, m := range []*mount{s.watchMount, s.tok, s.main} {
			if m == nil {
				continue
			}
			if err := s.vc.Sys().UnmountWithContext(ctx, m.path); err != nil {
				problems = append(problems, fmt.Sprintf("disabling %s: %s", m.path, vaultMessage(err)))
			}
		}
	}
	s.mu.Lock()
	made := slices.Clone(s.made)
	s.mu.Unlock()
	// Newest first: a service account after its tokens.
	slices.Reverse(made)
	sw := &sweeper{d: s.dd, prefix: s.prefix}
	for _, o := range made {
		sw.c = o.by
		if err := sw.remove(ctx, ddObject{Kind: o.kind, ID: o.id, Name: o.name, Owner: o.owner}); err != nil {
			problems = append(problems, err.Error())
		}
	}
	row := &cassette.Scenario{Name: "cleanup", Result: "pass", Calls: s.px.callsOf("cleanup"), Seconds: time.Since(start).Seconds()}
	if len(problems) > 0 {
		row.Result, row.Detail = "fail", strings.Join(problems, "; ")
	}
	s.mu.Lock()
	s.results["cleanup"] = row
	s.mu.Unlock()
	return problems
}

// finalSweep lists what is left with the run's names, charges it to the
// scenarios that made it, deletes it, and lists again.
func (s *suite) finalSweep(ctx context.Context) (int, []string) {
	s.px.setScenario("sweep")
	start := time.Now()
	st := s.journal.state()
	sas := slices.Clone(st.ServiceAccounts)
	sw := &sweeper{d: s.dd, c: s.t.given.keys(), selfID: s.selfID, prefix: s.prefix, markers: st.markers(), sas: sas}
	var problems []string
	found, errs := sw.list(ctx)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	leftBy := map[string][]string{}
	for _, o := range found {
		who := s.ownerOf(o.Name)
		leftBy[who] = append(leftBy[who], o.String())
		if err := sw.remove(ctx, o); err != nil {
			problems = append(problems, err.Error())
		}
	}
	left, errs := sw.list(ctx)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	for _, o := range left {
		problems = append(problems, "still in Datadog after the sweep: "+o.String())
	}
	s.mu.Lock()
	for who, objects := range leftBy {
		row := s.results[who]
		if row == nil {
			row = &cassette.Scenario{Name: who, Result: "pass"}
			s.results[who] = row
		}
		row.Leftovers += len(objects)
		if row.Result == "pass" {
			row.Result = "fail"
		}
		row.Detail = strings.TrimPrefix(row.Detail+"; left in Datadog: "+strings.Join(objects, ", "), "; ")
	}
	row := &cassette.Scenario{Name: "sweep", Result: "pass", Calls: s.px.callsOf("sweep"), Leftovers: len(left), Seconds: time.Since(start).Seconds(),
		Detail: fmt.Sprintf("%d objects with the run's names were still in Datadog and deleted", len(found))}
	if len(found) == 0 {
		row.Detail = "nothing with the run's names was left"
	}
	if len(problems) > 0 {
		row.Result, row.Detail = "fail", strings.Join(problems, "; ")
	}
	if old := s.results["sweep"]; old != nil {
		row.Leftovers += old.Leftovers // objects charged to no scenario
	}
	s.results["sweep"] = row
	s.mu.Unlock()
	return len(left), problems
}

// writeRecording writes each scenario's cassette and the run's manifest.
func (s *suite) writeRecording(rep *Report, start time.Time) error {
	dir := filepath.Join(s.rec, "cassettes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	calls := 0
	for scenario, interactions := range s.px.recorded() {
		calls += len(interactions)
		if err := cassette.Write(filepath.Join(dir, cassette.FileName(scenario)), cassette.Cassette{Interactions: interactions}); err != nil {
			return err
		}
	}
	m := cassette.Manifest{
		Format: 1, Suite: "datadog-acceptance", RunID: s.runID, Mode: s.t.mode, Site: s.t.site, APIURLSet: s.t.urlSet,
		StartedAt: start.UTC().Format(time.RFC3339), FinishedAt: time.Now().UTC().Format(time.RFC3339),
		Given: cassette.Given{
			APIKey: s.red.Secret(s.t.given.APIKey), AppKey: s.red.Secret(s.t.given.AppKey),
			ServiceAccountID: s.red.ID(s.t.given.ServiceAccountID), AccessToken: s.red.Secret(s.t.given.AccessToken),
			AccessTokenScopes: s.tokenScopes,
		},
		Scenarios: rep.Scenarios, Facts: rep.Facts, Calls: calls,
		Redacted: []string{
			"every secret (API keys, application keys, access tokens, in headers and bodies): REDACTED_API_KEY_n, REDACTED_APP_KEY_n, REDACTED_ACCESS_TOKEN_n",
			"every identifier (UUID): 00000000-0000-4000-8000-<n>",
			"every other string value (names, e-mails, handles, last4, public portions, titles) but types, timestamps, scopes, statuses and error messages: REDACTED_<FIELD>_n",
			"kept: the names of the objects the run made (" + s.prefix + "…, vault-root-<the run's mount markers>-…)",
		},
	}
	for i := range m.Scenarios {
		m.Scenarios[i].Detail = s.red.scrub(m.Scenarios[i].Detail)
	}
	for i := range m.Facts {
		m.Facts[i].Seen = s.red.scrub(m.Facts[i].Seen)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.rec, "run.json"), append(data, '\n'), 0o644)
}
