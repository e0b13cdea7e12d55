package acceptance

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

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
