package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

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
	b := []byte(hostutil.RandomHex(n))
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
