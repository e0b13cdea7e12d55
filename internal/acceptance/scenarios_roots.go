package acceptance

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

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
