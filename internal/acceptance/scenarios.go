package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
)

// scenarioDef is one row of the table.
type scenarioDef struct {
	name string
	// needs says why the scenario cannot run ("" when it can).
	needs func(s *suite) string
	run   func(s *suite, ctx context.Context) error
	// finish marks the second half of a scenario started earlier (the
	// watch, which waits for Vault's periodic run while others go on).
	finish bool
}

// ScenarioNames lists the scenarios in the order they run.
func ScenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		if !sc.finish {
			names = append(names, sc.name)
		}
	}
	return names
}

func always(*suite) string { return "" }

func needsMain(s *suite) string {
	if s.main == nil {
		return "config/app-key-root did not pass"
	}
	return ""
}

func needsServiceAccount(s *suite) string {
	if s.t.given.ServiceAccountID == "" {
		return "set " + EnvServiceAccount
	}
	return needsMain(s)
}

func needsToken(s *suite) string {
	if s.t.given.ServiceAccountID == "" || s.t.given.AccessToken == "" {
		return "set " + EnvAccessToken + " and " + EnvServiceAccount
	}
	if s.tok == nil {
		return "config/token-root did not pass"
	}
	return ""
}

func scenarios() []scenarioDef {
	return []scenarioDef{
		{name: "config/app-key-root", needs: always, run: (*suite).configAppKeyRoot},
		{name: "config/token-root", needs: func(s *suite) string {
			if s.t.given.ServiceAccountID == "" || s.t.given.AccessToken == "" {
				return "set " + EnvAccessToken + " and " + EnvServiceAccount
			}
			return ""
		}, run: (*suite).configTokenRoot},
		{name: "watch", needs: needsMain, run: (*suite).watchStart},
		{name: "creds/application_key", needs: needsMain, run: credsScenario("app", "application_key", nil)},
		{name: "creds/service_account_application_key", needs: needsServiceAccount,
			run: credsScenario("saapp", "service_account_application_key", func(s *suite) map[string]any {
				return map[string]any{"service_account_id": s.t.given.ServiceAccountID}
			})},
		{name: "creds/personal_access_token", needs: needsMain, run: credsScenario("pat", "personal_access_token", nil)},
		{name: "creds/service_access_token", needs: needsServiceAccount,
			run: credsScenario("sat", "service_access_token", func(s *suite) map[string]any {
				return map[string]any{"service_account_id": s.t.given.ServiceAccountID}
			})},
		{name: "creds/api_key", needs: needsMain, run: credsScenario("apikey", "api_key", nil)},
		{name: "revoke", needs: needsMain, run: (*suite).revokeScenario},
		{name: "renew", needs: needsMain, run: (*suite).renewScenario},
		{name: "narrowing", needs: needsMain, run: (*suite).narrowingScenario},
		{name: "shared-api-keys", needs: needsMain, run: (*suite).sharedAPIKeysScenario},
		{name: "api-key-cap", needs: needsMain, run: (*suite).apiKeyCapScenario},
		{name: "access-token-rules", needs: needsToken, run: (*suite).accessTokenRulesScenario},
		{name: "rotate-root/app-key", needs: needsMain, run: (*suite).rotateAppKeyScenario},
		{name: "rotate-root/token-root", needs: needsToken, run: (*suite).rotateTokenScenario},
		{name: "tidy", needs: needsMain, run: (*suite).tidyScenario},
		{name: "facts", needs: always, run: (*suite).factsScenario},
		{name: "watch", finish: true, needs: func(s *suite) string {
			if s.watchState == nil {
				return "not started"
			}
			return ""
		}, run: (*suite).watchFinish},
	}
}

// selected applies -only and -skip; the config scenarios always run, the
// others need them.
func (s *suite) selected(name string) bool {
	matches := func(patterns []string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool {
			return p == name || strings.HasSuffix(p, "/") && strings.HasPrefix(name, p) || strings.HasPrefix(name, p+"/")
		})
	}
	if strings.HasPrefix(name, "config/") {
		return true
	}
	if len(s.opts.Only) > 0 && !matches(s.opts.Only) {
		return false
	}
	return !matches(s.opts.Skip)
}

// row returns a scenario's row, making it in table order.
func (s *suite) row(name string) *cassette.Scenario {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.results[name]
	if r == nil {
		r = &cassette.Scenario{Name: name}
		s.results[name] = r
	}
	return r
}

// rows returns the table: the scenarios in order, then clean-up and sweep.
func (s *suite) rows() []cassette.Scenario {
	var out []cassette.Scenario
	names := append([]string{"setup"}, ScenarioNames()...)
	names = append(names, "cleanup", "sweep")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		if r := s.results[name]; r != nil {
			if r.Result == "" {
				r.Result = "skipped"
			}
			out = append(out, *r)
		}
	}
	return out
}

func (s *suite) runScenarios(ctx context.Context) {
	for _, sc := range scenarios() {
		s.runOne(ctx, sc)
		if s.opts.HoldAfter != "" && s.opts.HoldAfter == sc.name && !sc.finish && ctx.Err() == nil {
			s.logf("holding after %s until interrupted (pid %d)", sc.name, pidOf())
			<-ctx.Done()
		}
	}
}

func (s *suite) runOne(ctx context.Context, sc scenarioDef) {
	r := s.row(sc.name)
	if sc.finish {
		if sc.needs(s) != "" || r.Result != "running" {
			return
		}
	} else {
		switch {
		case ctx.Err() != nil:
			r.Result, r.Detail = "skipped", "the run was interrupted before it"
			return
		case !s.selected(sc.name):
			r.Result, r.Detail = "skipped", "not selected"
			return
		}
		if why := sc.needs(s); why != "" {
			r.Result, r.Detail = "skipped", why
			s.logf("%-40s skipped: %s", sc.name, why)
			return
		}
	}
	s.px.setScenario(sc.name)
	start := time.Now()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		return sc.run(s, ctx)
	}()
	r.Seconds += time.Since(start).Seconds()
	r.Calls = s.px.callsOf(sc.name)
	switch {
	case err == nil && sc.name == "watch" && !sc.finish:
		r.Result = "running"
		s.logf("%-40s started: %s", sc.name, r.Detail)
		return
	case err == nil:
		r.Result = "pass"
	case ctx.Err() != nil:
		r.Result, r.Detail = "interrupted", s.red.scrub(err.Error())
	default:
		r.Result, r.Detail = "fail", s.red.scrub(err.Error())
	}
	s.logf("%-40s %s (%.1fs, %d Datadog calls)%s", sc.name, r.Result, r.Seconds, r.Calls, detailSuffix(r.Detail))
}

func detailSuffix(d string) string {
	if d == "" {
		return ""
	}
	return ": " + d
}

// --- config ---

// configAppKeyRoot configures the main mount with an application key
// root: a key the suite makes for the user (so that a rotation later
// deletes that key, never the user's own), written with the user's API
// key. A wrong key is refused first, naming it.
func (s *suite) configAppKeyRoot(ctx context.Context) error {
	name := s.prefix + "root-main"
	s.own(name, "config/app-key-root")
	id, secret, a := s.dd.createAppKey(ctx, s.t.given.keys(), name, nil)
	if a.Err != nil {
		return fmt.Errorf("making the main mount's root application key with %s: %s", EnvAppKey, a)
	}
	s.red.Secret(secret)
	s.track(madeObject{kind: objAppKey, id: id, name: name, by: s.t.given.keys()})
	s.mainRoot = secret
	if err := s.checkNew(ctx, "a new application key", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{APIKey: s.t.given.APIKey, AppKey: secret}, probe)
	}); err != nil {
		return err
	}
	m, err := s.newMount(ctx, "")
	if err != nil {
		return err
	}
	base := map[string]any{"api_key": s.t.given.APIKey, "site": s.t.site, "api_url": s.px.URL, "tidy_interval": 0}
	bad := map[string]any{"app_key": "ddapp_" + strings.Repeat("x", 34)}
	for k, v := range base {
		bad[k] = v
	}
	if err := s.expectRefused(ctx, m.path+"/config", bad, "app_key"); err != nil {
		return err
	}
	base["app_key"] = secret
	if _, err := s.write(ctx, m.path+"/config", base); err != nil {
		return err
	}
	cfg, err := s.read(ctx, m.path+"/config")
	if err != nil {
		return err
	}
	if got := cfg.Data["root_credential_type"]; got != "application_key" {
		return fmt.Errorf("config reads root_credential_type %v, want application_key", got)
	}
	if got := cfg.Data["root_key_id"]; got != id {
		return fmt.Errorf("config reads root_key_id %v, want the key written (%s)", got, id)
	}
	if got := cfg.Data["owner_id"]; got != s.selfID {
		return fmt.Errorf("config reads owner_id %v, want the user of %s (%s)", got, EnvAppKey, s.selfID)
	}
	s.main = m
	return nil
}

// configTokenRoot configures a second mount with a service access token
// root: a token the suite makes with DD_ACCESS_TOKEN (with its scopes and
// an expiry no later than its own), so that a rotation deletes that one,
// never the user's.
func (s *suite) configTokenRoot(ctx context.Context) error {
	sa := s.t.given.ServiceAccountID
	parent := creds{Bearer: s.t.given.AccessToken}
	scopes := s.tokenScopes
	if len(scopes) == 0 {
		scopes = tokenRootScopes
	}
	expires := time.Now().Add(25 * time.Hour).UTC().Truncate(time.Second)
	if end := s.tokenRoot.expires; !end.IsZero() && end.Before(expires) {
		if time.Until(end) < time.Hour {
			return fmt.Errorf("%s expires at %s, within the hour: give a token with more life", EnvAccessToken, end.Format(time.RFC3339))
		}
		expires = end
	}
	name := s.prefix + "root-token"
	s.own(name, "config/token-root")
	id, secret, a := s.dd.createSAT(ctx, parent, sa, name, scopes, &expires)
	if a.Err != nil {
		return fmt.Errorf("making the token mount's root token with %s: %s", EnvAccessToken, a)
	}
	s.red.Secret(secret)
	s.track(madeObject{kind: objSAT, id: id, name: name, owner: sa, by: parent})
	s.tokenRoot.id, s.tokenRoot.secret, s.tokenRoot.expires, s.tokenRoot.scopes = id, secret, expires, scopes
	if err := s.checkNew(ctx, "a new service access token", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{Bearer: secret}, probe)
	}); err != nil {
		return err
	}
	m, err := s.newMount(ctx, "-token")
	if err != nil {
		return err
	}
	if _, err := s.write(ctx, m.path+"/config", map[string]any{"access_token": secret, "service_account_id": sa,
		"site": s.t.site, "api_url": s.px.URL, "tidy_interval": 0}); err != nil {
		return err
	}
	cfg, err := s.read(ctx, m.path+"/config")
	if err != nil {
		return err
	}
	if got := cfg.Data["root_credential_type"]; got != "service_access_token" {
		return fmt.Errorf("config reads root_credential_type %v, want service_access_token", got)
	}
	if got, _ := cfg.Data["root_expires_at"].(string); !sameTime(got, expires) {
		return fmt.Errorf("config reads root_expires_at %q, want the token's expiry %s", got, expires.Format(time.RFC3339))
	}
	s.tok = m
	return nil
}

func sameTime(s string, t time.Time) bool {
	got, err := time.Parse(time.RFC3339, s)
	return err == nil && got.Sub(t).Abs() <= time.Second
}

// --- credentials ---

// credsScenario issues a credential of one kind and uses it: a call in
// its scope answers 200, one outside 403. Its lease stays for revoke.
func credsScenario(suffix, kind string, extra func(*suite) map[string]any) func(*suite, context.Context) error {
	return func(s *suite, ctx context.Context) error {
		scenario := "creds/" + kind
		fields := map[string]any{"credential_type": kind, "ttl": "10m", "max_ttl": "1h"}
		if kind != "api_key" {
			fields["scopes"] = "dashboards_read"
		}
		if extra != nil {
			for k, v := range extra(s) {
				fields[k] = v
			}
		}
		role, err := s.writeRole(ctx, s.main, suffix, scenario, fields)
		if err != nil {
			return err
		}
		c, err := s.issue(ctx, s.main, role, scenario, nil)
		if err != nil {
			return err
		}
		s.credsByScenario[scenario] = c
		what := article(strings.ReplaceAll(kind, "_", " "))
		switch kind {
		case "application_key", "service_account_application_key":
			if c.AppKey == "" || c.AppKeyID == "" || c.APIKey == "" || c.APIKeyID == "" {
				return fmt.Errorf("the creds answer lacks the application key or its (shared) API key")
			}
			if kind == "service_account_application_key" && c.ServiceAccount != s.t.given.ServiceAccountID {
				return fmt.Errorf("the key belongs to service account %s, want %s", c.ServiceAccount, s.t.given.ServiceAccountID)
			}
		case "personal_access_token", "service_access_token":
			if c.Token == "" || c.TokenID == "" || c.ExpiresAt.IsZero() {
				return fmt.Errorf("the creds answer lacks the token, its id or its expiry")
			}
		case "api_key":
			if c.APIKey == "" || c.APIKeyID == "" {
				return fmt.Errorf("the creds answer lacks the API key")
			}
		}
		if err := s.checkWorks(ctx, c, what); err != nil {
			return err
		}
		if c.AppKey != "" {
			// The lease's API key, shared by the role's leases of this window.
			if err := s.checkNew(ctx, "the shared API key of "+what, func(probe bool) answer {
				return s.dd.validateAPIKey(ctx, c.APIKey, probe)
			}); err != nil {
				return err
			}
		}
		if err := s.checkOutOfScope(ctx, c, what); err != nil {
			return err
		}
		if c.Token != "" {
			return s.checkTokenAlone(ctx, c, what)
		}
		return nil
	}
}

// revokeScenario revokes every lease the creds scenarios issued: each
// credential is then refused.
func (s *suite) revokeScenario(ctx context.Context) error {
	var problems []string
	n := 0
	for _, sc := range ScenarioNames() {
		c := s.credsByScenario[sc]
		if c == nil || !strings.HasPrefix(sc, "creds/") {
			continue
		}
		what := strings.ReplaceAll(strings.TrimPrefix(sc, "creds/"), "_", " ")
		if err := s.revoke(ctx, c); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		n++
		if err := s.checkRefused(ctx, c, "a revoked "+what); err != nil {
			problems = append(problems, err.Error())
		}
		if c.AppKey != "" && c.APIKey != "" {
			// The role's shared API key went with its last lease.
			if _, err := s.checkGone(ctx, "the shared API key of a revoked "+what, func(probe bool) answer {
				return s.dd.validateAPIKey(ctx, c.APIKey, probe)
			}); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	if n == 0 {
		return fmt.Errorf("no creds scenario issued a credential to revoke")
	}
	s.row("revoke").Detail = fmt.Sprintf("%d credentials revoked and refused", n)
	return nil
}

// renewScenario renews a lease: it lasts the increment, never past
// max_ttl, and the credential keeps working; then it is revoked.
func (s *suite) renewScenario(ctx context.Context) error {
	role, err := s.writeRole(ctx, s.main, "renew", "renew", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none",
		"ttl": "1m", "max_ttl": "3m"})
	if err != nil {
		return err
	}
	c, err := s.issue(ctx, s.main, role, "renew", nil)
	if err != nil {
		return err
	}
	if c.leaseDuration != 60 {
		return fmt.Errorf("the lease lasts %ds, want the role's ttl (60s)", c.leaseDuration)
	}
	if err := s.checkWorks(ctx, c, "an application key"); err != nil {
		return err
	}
	renewed, err := s.vc.Sys().RenewWithContext(ctx, c.leaseID, 120)
	if err != nil {
		return fmt.Errorf("renewing: %s", s.red.scrub(vaultMessage(err)))
	}
	if renewed.LeaseDuration < 100 || renewed.LeaseDuration > 120 {
		return fmt.Errorf("renewed for 120s, the lease lasts %ds", renewed.LeaseDuration)
	}
	capped, err := s.vc.Sys().RenewWithContext(ctx, c.leaseID, 3600)
	if err != nil {
		return fmt.Errorf("renewing past max_ttl: %s", s.red.scrub(vaultMessage(err)))
	}
	if capped.LeaseDuration > 180 {
		return fmt.Errorf("renewed for 1h, the lease lasts %ds, past the role's max_ttl (3m)", capped.LeaseDuration)
	}
	if a := s.dd.readDashboards(ctx, s.consumer(c), false); a.Status != http.StatusOK {
		return fmt.Errorf("after renewals the key gets %s, want 200", a)
	}
	if err := s.revoke(ctx, c); err != nil {
		return err
	}
	return s.checkRefused(ctx, c, "a revoked, renewed application key")
}

// narrowingScenario asks creds/<role> for less than the role grants.
func (s *suite) narrowingScenario(ctx context.Context) error {
	role, err := s.writeRole(ctx, s.main, "narrow", "narrowing", map[string]any{"scopes": "dashboards_read,monitors_read",
		"api_key_mode": "none", "ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	path := s.main.path + "/creds/" + role
	if err := s.expectRefused(ctx, path, map[string]any{"scopes": "monitors_read,logs_read_data"}, "logs_read_data"); err != nil {
		return err
	}
	if err := s.expectRefused(ctx, path, map[string]any{"ttl": "2h"}, "ttl"); err != nil {
		return err
	}
	c, err := s.issue(ctx, s.main, role, "narrowing", map[string]any{"scopes": "monitors_read", "ttl": "2m"})
	if err != nil {
		return err
	}
	if c.leaseDuration != 120 || !slices.Equal(c.Scopes, []string{"monitors_read"}) {
		return fmt.Errorf("the narrowed lease lasts %ds with scopes %v, want 120s and [monitors_read]", c.leaseDuration, c.Scopes)
	}
	scopes, a := s.dd.appKeyScopes(ctx, s.t.given.keys(), c.AppKeyID)
	if a.Err != nil || !slices.Equal(scopes, []string{"monitors_read"}) {
		return fmt.Errorf("the key in Datadog has scopes %v (%s), want [monitors_read]", scopes, a)
	}
	if err := s.checkNew(ctx, "a narrowed application key", func(probe bool) answer {
		return s.dd.readMonitorsProbe(ctx, s.consumer(c), probe)
	}); err != nil {
		return err
	}
	if a := s.dd.readDashboards(ctx, s.consumer(c), false); a.Status != http.StatusForbidden {
		return fmt.Errorf("the narrowed key read dashboards (a scope of the role, not of the request): %s, want 403", a)
	}
	if err := s.revoke(ctx, c); err != nil {
		return err
	}
	return s.checkRefused(ctx, c, "a revoked, narrowed application key")
}

// sharedAPIKeysScenario: two leases of a role share its API key
// (api_key_mode shared, the default), which lives until the last of them.
func (s *suite) sharedAPIKeysScenario(ctx context.Context) error {
	role, err := s.writeRole(ctx, s.main, "shared", "shared-api-keys", map[string]any{"scopes": "dashboards_read", "ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	r, err := s.read(ctx, s.main.path+"/roles/"+role)
	if err != nil {
		return err
	}
	if r.Data["api_key_mode"] != "shared" {
		return fmt.Errorf("a role written without api_key_mode reads %v, want shared (the default)", r.Data["api_key_mode"])
	}
	first, err := s.issue(ctx, s.main, role, "shared-api-keys", nil)
	if err != nil {
		return err
	}
	second, err := s.issue(ctx, s.main, role, "shared-api-keys", nil)
	if err != nil {
		return err
	}
	if first.APIKeyID == "" || first.APIKeyID != second.APIKeyID || first.AppKeyID == second.AppKeyID {
		return fmt.Errorf("two leases got API keys %s and %s and application keys %s and %s: want one API key, two application keys",
			first.APIKeyID, second.APIKeyID, first.AppKeyID, second.AppKeyID)
	}
	if err := s.checkWorks(ctx, second, "an application key with a shared API key"); err != nil {
		return err
	}
	if err := s.revoke(ctx, first); err != nil {
		return err
	}
	if err := s.checkRefused(ctx, first, "the first lease's application key"); err != nil {
		return err
	}
	if a := s.dd.validateAPIKey(ctx, second.APIKey, false); a.Status != http.StatusOK {
		return fmt.Errorf("revoking one lease broke the API key the other holds: %s", a)
	}
	if err := s.revoke(ctx, second); err != nil {
		return err
	}
	if _, err := s.checkGone(ctx, "a shared API key after its last lease", func(probe bool) answer {
		return s.dd.validateAPIKey(ctx, second.APIKey, probe)
	}); err != nil {
		return err
	}
	return nil
}

// apiKeyCapScenario reads the organisation's API key cap and count as
// the engine does, then has api_key_mode dynamic refused near the cap
// without making a single key: config's api_key_reserve is set to the cap,
// so that no room is left for the role (nothing is created), then to 0,
// where a dynamic role issues one API key per lease.
func (s *suite) apiKeyCapScenario(ctx context.Context) error {
	count, max, hasMax, a := s.dd.apiKeyCap(ctx, s.t.given.keys())
	if a.Err != nil {
		return fmt.Errorf("listing API keys: %s", a)
	}
	s.facts.observe("API key cap in meta.max_allowed", hasMax && count > 0,
		fmt.Sprintf("meta.max_allowed %s, meta.page.total_filtered_count %d", maybe(hasMax, max), count))
	if !hasMax {
		return fmt.Errorf("GET /api/v2/api_keys has no meta.max_allowed: the engine cannot know the cap")
	}
	role, err := s.writeRole(ctx, s.main, "dyn", "api-key-cap", map[string]any{"scopes": "dashboards_read", "api_key_mode": "dynamic",
		"ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	cfg := s.main.path + "/config"
	defer s.write(context.WithoutCancel(ctx), cfg, map[string]any{"api_key_reserve": 5})
	if _, err := s.write(ctx, cfg, map[string]any{"api_key_reserve": max}); err != nil {
		return err
	}
	_, err = s.vc.Logical().ReadWithContext(ctx, s.main.path+"/creds/"+role)
	msg := s.red.scrub(vaultMessage(err))
	if err == nil || vaultStatus(err) != http.StatusBadRequest || !strings.Contains(msg, "meta.max_allowed") || !strings.Contains(msg, "api_key_mode=shared") {
		return fmt.Errorf("near the cap a dynamic role's creds got %d %q, want HTTP 400 naming meta.max_allowed and api_key_mode=shared", vaultStatus(err), msg)
	}
	if n, err := s.dd.countNamed(ctx, s.t.given.keys(), "vault-"+role+"-"); err != nil || n != 0 {
		return fmt.Errorf("a refused dynamic creds request left %d keys in Datadog (%v)", n, err)
	}
	detail := fmt.Sprintf("cap %d, %d API keys held; refused with api_key_reserve=%d", max, count, max)
	if s.t.mode == "emulator" {
		if err := s.capRefusalFact(ctx); err != nil {
			return err
		}
	} else {
		s.facts.skip("API key cap refusal", "not provoked: it needs the organisation at its cap")
	}
	if count+2 >= max {
		s.row("api-key-cap").Detail = detail + "; the organisation is too near its cap to issue dynamic keys"
		return nil
	}
	if _, err := s.write(ctx, cfg, map[string]any{"api_key_reserve": 0}); err != nil {
		return err
	}
	var leases []*issued
	for range 2 {
		c, err := s.issue(ctx, s.main, role, "api-key-cap", nil)
		if err != nil {
			return err
		}
		leases = append(leases, c)
	}
	if leases[0].APIKeyID == leases[1].APIKeyID {
		return fmt.Errorf("two dynamic leases share API key %s; want one each", leases[0].APIKeyID)
	}
	for _, c := range leases {
		if err := s.checkWorks(ctx, c, "an application key with a dynamic API key"); err != nil {
			return err
		}
		if err := s.revoke(ctx, c); err != nil {
			return err
		}
		if _, err := s.checkGone(ctx, "a revoked lease's dynamic API key", func(probe bool) answer {
			return s.dd.validateAPIKey(ctx, c.APIKey, probe)
		}); err != nil {
			return err
		}
	}
	s.row("api-key-cap").Detail = detail + "; with api_key_reserve=0 two leases got an API key each, deleted on revoke"
	return nil
}

func maybe(ok bool, n int) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprint(n)
}

// capRefusalFact (emulator only) brings the organisation to its cap and
// tries one more API key: the refusal's status and wording are the
// emulator's own guess.
func (s *suite) capRefusalFact(ctx context.Context) error {
	status, org, err := s.admin(ctx, http.MethodGet, "/_emulator/org", nil)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("reading the emulator's organisation: %d %v", status, err)
	}
	oldCap, _ := org["max_api_keys"].(float64)
	count, _ := org["api_keys"].(float64)
	defer s.admin(context.WithoutCancel(ctx), http.MethodPatch, "/_emulator/org", map[string]any{"max_api_keys": int(oldCap)})
	if status, _, err := s.admin(ctx, http.MethodPatch, "/_emulator/org", map[string]any{"max_api_keys": int(count)}); err != nil || status != http.StatusOK {
		return fmt.Errorf("lowering the emulator's cap: %d %v", status, err)
	}
	name := s.prefix + "cap-probe"
	s.own(name, "api-key-cap")
	id, a := s.dd.createAPIKey(ctx, s.t.given.keys(), name)
	if a.Err == nil {
		s.track(madeObject{kind: objAPIKey, id: id, name: name, by: s.t.given.keys()})
	}
	want := fmt.Sprintf("API key limit reached: this organisation may hold at most %d API keys", int(count))
	s.facts.expectAnswer("API key cap refusal", a, http.StatusBadRequest, want)
	return nil
}

// --- access tokens ---

// accessTokenRulesScenario: a token root refuses roles that make
// application keys (and personal access tokens) with a 400; a service
// access token role issues, and its token works alone as
// DD-APPLICATION-KEY; Datadog itself refuses a token that makes an
// application key, grants a scope it lacks, or outlives itself.
func (s *suite) accessTokenRulesScenario(ctx context.Context) error {
	sa := s.t.given.ServiceAccountID
	for suffix, kind := range map[string]string{"tapp": "application_key", "tsaapp": "service_account_application_key", "tpat": "personal_access_token"} {
		fields := map[string]any{"name_template": "vault-{{ .RoleName }}", "credential_type": kind, "scopes": "dashboards_read"}
		if kind == "service_account_application_key" {
			fields["service_account_id"] = sa
		}
		if err := s.expectRefused(ctx, s.tok.path+"/roles/"+s.roleName(suffix), fields, "service_access_token"); err != nil {
			return err
		}
	}
	role, err := s.writeRole(ctx, s.tok, "tsat", "access-token-rules", map[string]any{"credential_type": "service_access_token",
		"service_account_id": sa, "scopes": "dashboards_read", "ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	c, err := s.issue(ctx, s.tok, role, "access-token-rules", nil)
	if err != nil {
		return err
	}
	s.credsByScenario["access-token-rules"] = c
	if c.ExpiresAt.After(s.tokenRoot.expires) {
		return fmt.Errorf("the token expires at %s, after the root (%s)", c.ExpiresAt, s.tokenRoot.expires)
	}
	if err := s.checkWorks(ctx, c, "a service access token of a token root"); err != nil {
		return err
	}
	if err := s.checkOutOfScope(ctx, c, "a service access token of a token root"); err != nil {
		return err
	}
	if err := s.checkTokenAlone(ctx, c, "a service access token of a token root"); err != nil {
		return err
	}

	// Datadog's own rules, tried with the root token (which has the
	// permissions, so that only the rule can refuse). Whatever slips
	// through carries the run's prefix and is deleted.
	root := creds{Bearer: s.tokenRoot.secret}
	name := s.prefix + "rule-appkey"
	s.own(s.prefix+"rule-", "access-token-rules")
	if id, a := s.dd.createSAAppKey(ctx, root, sa, name, []string{"dashboards_read"}); a.Err == nil {
		s.track(madeObject{kind: objSAAppKey, id: id, name: name, owner: sa, by: s.t.given.keys()})
		s.facts.observe("token cannot create application keys: 403", false, a.String())
	} else {
		s.facts.observe("token cannot create application keys: 403", a.Status == http.StatusForbidden, a.String())
	}
	if wider := scopeOutside(s.tokenRoot.scopes); wider != "" {
		exp := s.tokenRoot.expires.Add(-time.Hour)
		s.tryToken(ctx, root, s.prefix+"rule-widerscope", []string{wider}, &exp, "token grants only its own scopes: 403")
	} else {
		s.facts.skip("token grants only its own scopes: 403", "the root token holds every scope tried")
	}
	later := s.tokenRoot.expires.Add(24 * time.Hour)
	s.tryToken(ctx, root, s.prefix+"rule-outlives", []string{s.tokenRoot.scopes[0]}, &later, "token cannot outlive its maker: 403")
	return nil
}

// tryToken has a token make a token a rule forbids, and notes the answer.
func (s *suite) tryToken(ctx context.Context, by creds, name string, scopes []string, expires *time.Time, fact string) {
	sa := s.t.given.ServiceAccountID
	id, secret, a := s.dd.createSAT(ctx, by, sa, name, scopes, expires)
	if a.Err == nil {
		s.red.Secret(secret)
		s.track(madeObject{kind: objSAT, id: id, name: name, owner: sa, by: s.t.given.keys()})
	}
	s.facts.observe(fact, a.Status == http.StatusForbidden, a.String())
}

// scopeOutside returns a Datadog permission the scopes do not hold.
func scopeOutside(scopes []string) string {
	for _, p := range []string{"logs_read_data", "synthetics_read", "incident_read", "metrics_read", "events_read", "hosts_read"} {
		if !slices.Contains(scopes, p) {
			return p
		}
	}
	return ""
}

// --- rotation ---

// rotateAppKeyScenario rotates the main mount's root: a new key
// vault-root-<marker>-…, the suite's root key refused, new creds issued,
// a lease from before the rotation revoked.
func (s *suite) rotateAppKeyScenario(ctx context.Context) error {
	role, err := s.writeRole(ctx, s.main, "rot", "rotate-root/app-key", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none",
		"ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	before, err := s.issue(ctx, s.main, role, "rotate-root/app-key", nil) // also writes the marker to the journal
	if err != nil {
		return err
	}
	s.own("vault-root-"+s.main.marker+"-", "rotate-root/app-key")
	rotated, err := s.write(ctx, s.main.path+"/config/rotate-root", map[string]any{})
	if err != nil {
		return err
	}
	keyName, _ := rotated.Data["key_name"].(string)
	keyID, _ := rotated.Data["key_id"].(string)
	if rotated.Data["credential_type"] != "application_key" || !strings.HasPrefix(keyName, "vault-root-"+s.main.marker+"-") {
		return fmt.Errorf("rotate-root answered %v %q, want an application key named vault-root-%s-…", rotated.Data["credential_type"], keyName, s.main.marker)
	}
	if _, err := s.checkGone(ctx, "the root key a rotation replaced", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{APIKey: s.t.given.APIKey, AppKey: s.mainRoot}, probe)
	}); err != nil {
		return err
	}
	cfg, err := s.read(ctx, s.main.path+"/config")
	if err != nil {
		return err
	}
	if cfg.Data["root_key_id"] != keyID {
		return fmt.Errorf("config reads root_key_id %v after the rotation, want %s", cfg.Data["root_key_id"], keyID)
	}
	after, err := s.issue(ctx, s.main, role, "rotate-root/app-key", nil)
	if err != nil {
		return err
	}
	if err := s.checkWorks(ctx, after, "an application key issued after a rotation"); err != nil {
		return err
	}
	for _, c := range []*issued{before, after} {
		if err := s.revoke(ctx, c); err != nil {
			return err
		}
		if err := s.checkRefused(ctx, c, "an application key revoked after a rotation"); err != nil {
			return err
		}
	}
	return nil
}

// rotateTokenScenario rotates the token root: a new token with the same
// end, the old one refused, leases from before revoked.
func (s *suite) rotateTokenScenario(ctx context.Context) error {
	role := s.roleName("tsat")
	before := s.credsByScenario["access-token-rules"]
	if before == nil {
		var err error
		if role, err = s.writeRole(ctx, s.tok, "tsat", "access-token-rules", map[string]any{"credential_type": "service_access_token",
			"service_account_id": s.t.given.ServiceAccountID, "scopes": "dashboards_read", "ttl": "10m", "max_ttl": "1h"}); err != nil {
			return err
		}
		if before, err = s.issue(ctx, s.tok, role, "rotate-root/token-root", nil); err != nil {
			return err
		}
	}
	s.own("vault-root-"+s.tok.marker+"-", "rotate-root/token-root")
	rotated, err := s.write(ctx, s.tok.path+"/config/rotate-root", map[string]any{})
	if err != nil {
		return err
	}
	keyName, _ := rotated.Data["key_name"].(string)
	if rotated.Data["credential_type"] != "service_access_token" || !strings.HasPrefix(keyName, "vault-root-"+s.tok.marker+"-") {
		return fmt.Errorf("rotate-root answered %v %q, want a service access token named vault-root-%s-…", rotated.Data["credential_type"], keyName, s.tok.marker)
	}
	if got, _ := rotated.Data["expires_at"].(string); !sameTime(got, s.tokenRoot.expires) {
		return fmt.Errorf("the rotated token expires at %q, want the previous root's end %s", got, s.tokenRoot.expires.Format(time.RFC3339))
	}
	if _, err := s.checkGone(ctx, "the root token a rotation replaced", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{Bearer: s.tokenRoot.secret}, probe)
	}); err != nil {
		return err
	}
	cfg, err := s.read(ctx, s.tok.path+"/config")
	if err != nil {
		return err
	}
	if got, _ := cfg.Data["root_expires_at"].(string); !sameTime(got, s.tokenRoot.expires) {
		return fmt.Errorf("config reads root_expires_at %q after the rotation, want it unchanged (%s)", got, s.tokenRoot.expires.Format(time.RFC3339))
	}
	after, err := s.issue(ctx, s.tok, role, "rotate-root/token-root", nil)
	if err != nil {
		return err
	}
	if err := s.checkWorks(ctx, after, "a service access token issued after a rotation"); err != nil {
		return err
	}
	for _, c := range []*issued{before, after} {
		if err := s.revoke(ctx, c); err != nil {
			return err
		}
		if err := s.checkRefused(ctx, c, "a service access token revoked after a rotation"); err != nil {
			return err
		}
	}
	return nil
}

// --- tidy ---

// tidyScenario: an application key named as the engine names its own,
// with the main mount's marker and a record id no lease has, is an orphan:
// tidy finds it in a dry run, then deletes it, and leaves a live lease's
// key alone.
func (s *suite) tidyScenario(ctx context.Context) error {
	role, err := s.writeRole(ctx, s.main, "tidy", "tidy", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none",
		"ttl": "10m", "max_ttl": "1h"})
	if err != nil {
		return err
	}
	live, err := s.issue(ctx, s.main, role, "tidy", nil)
	if err != nil {
		return err
	}
	orphanName := "vault-" + role + "-orphan-" + s.main.marker + randomBase32(16)
	id, secret, a := s.dd.createAppKey(ctx, s.t.given.keys(), orphanName, []string{"dashboards_read"})
	if a.Err != nil {
		return fmt.Errorf("making an orphan key: %s", a)
	}
	s.red.Secret(secret)
	s.track(madeObject{kind: objAppKey, id: id, name: orphanName, by: s.t.given.keys()})

	status, err := s.runTidy(ctx, map[string]any{"dry_run": true, "safety_buffer": 0})
	if err != nil {
		return err
	}
	if !candidate(status, id) {
		return fmt.Errorf("a dry run did not find the orphan %s: %v", id, s.red.scrub(fmt.Sprint(status["candidates"])))
	}
	if a := s.dd.getAppKey(ctx, s.t.given.keys(), id); a.Status != http.StatusOK {
		return fmt.Errorf("a dry run deleted the orphan: %s", a)
	}
	status, err = s.runTidy(ctx, map[string]any{"safety_buffer": 0})
	if err != nil {
		return err
	}
	if deleted, _ := status["deleted"].(json.Number).Int64(); deleted < 1 {
		return fmt.Errorf("tidy deleted nothing: %v", s.red.scrub(fmt.Sprint(status)))
	}
	if _, err := s.checkGone(ctx, "an orphan tidy deleted", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{APIKey: s.t.given.APIKey, AppKey: secret}, probe)
	}); err != nil {
		return err
	}
	if a := s.dd.readDashboards(ctx, s.consumer(live), false); a.Status != http.StatusOK {
		return fmt.Errorf("after tidy, a live lease's key gets %s, want 200", a)
	}
	if err := s.revoke(ctx, live); err != nil {
		return err
	}
	return nil
}

func candidate(status map[string]any, id string) bool {
	list, _ := status["candidates"].([]any)
	for _, c := range list {
		if m, ok := c.(map[string]any); ok && m["id"] == id {
			return true
		}
	}
	return false
}

// runTidy starts tidy and waits for its status.
func (s *suite) runTidy(ctx context.Context, data map[string]any) (map[string]any, error) {
	if _, err := s.write(ctx, s.main.path+"/tidy", data); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := s.read(ctx, s.main.path+"/tidy/status")
		if err != nil {
			return nil, err
		}
		switch st.Data["state"] {
		case "finished":
			return st.Data, nil
		case "error":
			return nil, fmt.Errorf("tidy failed: %v", s.red.scrub(fmt.Sprint(st.Data["error"])))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("tidy still %v after 3 minutes", st.Data["state"])
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func randomBase32(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := []byte(randomHex(n))
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:n])
}

// --- facts ---

// factsScenario checks, with a key of its own, what no other scenario
// meets: when Datadog reports a key's use, the answer to an unknown
// scope, and to a key deleted twice.
func (s *suite) factsScenario(ctx context.Context) error {
	user := s.t.given.keys()
	name := s.prefix + "fact-key"
	s.own(s.prefix+"fact-", "facts")
	id, secret, a := s.dd.createAppKey(ctx, user, name, []string{"dashboards_read"})
	if a.Err != nil {
		return fmt.Errorf("making a key: %s", a)
	}
	s.red.Secret(secret)
	s.track(madeObject{kind: objAppKey, id: id, name: name, by: user})
	key := creds{APIKey: s.t.given.APIKey, AppKey: secret}
	if err := s.checkNew(ctx, "a new application key", func(probe bool) answer { return s.dd.validateKeys(ctx, key, probe) }); err != nil {
		return err
	}
	used := time.Now()

	// When Datadog shows the use.
	every := max(s.pollFast, 100*time.Millisecond)
	wait := s.opts.LastUseWait
	if s.t.mode == "emulator" {
		wait = 10 * time.Second
	}
	var lag time.Duration
	reads := 0
	for {
		reads++
		last, a := s.dd.appKeyLastUsed(ctx, user, id)
		if a.Err != nil {
			return fmt.Errorf("reading the key's last use: %s", a)
		}
		if last != nil {
			lag = time.Since(used)
			break
		}
		if time.Since(used) > wait || ctx.Err() != nil {
			lag = -1
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
	switch {
	case lag < 0:
		s.facts.observe("last use reported at once", false, fmt.Sprintf("last_used_at still null %s after the key's first use (%d reads); -last-use-wait waits longer", wait, reads))
	case reads == 1:
		s.facts.observe("last use reported at once", true, "last_used_at set on the first read after the first use")
	default:
		s.facts.observe("last use reported at once", false, fmt.Sprintf("last_used_at set after %.1fs (%d reads)", lag.Seconds(), reads))
	}

	// An unknown scope.
	badName := s.prefix + "fact-badscope"
	if badID, _, a := s.dd.createAppKey(ctx, user, badName, []string{"not_a_datadog_permission"}); a.Err == nil {
		s.track(madeObject{kind: objAppKey, id: badID, name: badName, by: user})
		s.facts.observe("unknown scope: 400 Invalid scopes", false, a.String())
	} else {
		s.facts.expectAnswer("unknown scope: 400 Invalid scopes", a, http.StatusBadRequest, "Invalid scopes")
	}

	// A key deleted, refused, deleted again.
	if a := s.dd.deleteAppKey(ctx, user, id); a.Err != nil {
		return fmt.Errorf("deleting the key: %s", a)
	}
	gone, err := s.checkGone(ctx, "a deleted application key", func(probe bool) answer { return s.dd.validateKeys(ctx, key, probe) })
	if err != nil {
		return err
	}
	s.facts.expectAnswer("wrong application key: 403 Forbidden", gone, http.StatusForbidden, "Forbidden")
	again := s.dd.deleteAppKey(ctx, user, id)
	s.facts.expectAnswer("application key deleted twice: 404", again, http.StatusNotFound, "Application key not found")
	return nil
}

// article puts "a" or "an" before a noun.
func article(noun string) string {
	if strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}
