package acceptance

import (
	"context"
	"fmt"
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

// article puts "a" or "an" before a noun.
func article(noun string) string {
	if strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}
