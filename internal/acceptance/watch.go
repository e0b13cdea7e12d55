package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
)

// The watch deletes a lease's credential once Datadog flags it as leaked
// or it went unused for its role's idle_ttl. It runs from Vault's periodic
// function, once a watch_interval (at least 1m): the suite starts it early,
// on a mount of its own, and checks it at the end, so that the wait
// overlaps the other scenarios.
//
// Timings: idle_ttl 1m, the engine's floor, with last_use_lag 30s (the
// emulator reports use at once; a real organisation's lag is what the
// facts measure). Against the emulator the unused credential is backdated
// and one more flagged as leaked (its admin endpoints), so the watch's
// first run, about a minute after the mount, kills both; against a real
// organisation the unused one is idle by the second run, about two
// minutes in, and leaks are not provoked.
const (
	watchLastUseLag = "30s"
	watchIdleTTL    = "1m"
	watchTimeout    = 3*time.Minute + 30*time.Second
)

type watchRun struct {
	started           time.Time
	idle, used, leak  *issued
	stop              func()
	usedMu            sync.Mutex
	usedCalls         int
	usedRefusedAnswer string
}

func (s *suite) watchStart(ctx context.Context) error {
	name := s.prefix + "root-watch"
	s.own(name, "watch")
	id, secret, a := s.dd.createAppKey(ctx, s.t.given.keys(), name, nil)
	if a.Err != nil {
		return fmt.Errorf("making the watch mount's root key: %s", a)
	}
	s.red.Secret(secret)
	s.track(madeObject{kind: objAppKey, id: id, name: name, by: s.t.given.keys()})
	if err := s.checkNew(ctx, "a new application key", func(probe bool) answer {
		return s.dd.validateKeys(ctx, creds{APIKey: s.t.given.APIKey, AppKey: secret}, probe)
	}); err != nil {
		return err
	}
	m, err := s.newMount(ctx, "-watch")
	if err != nil {
		return err
	}
	s.watchMount = m
	if _, err := s.write(ctx, m.path+"/config", map[string]any{"api_key": s.t.given.APIKey, "app_key": secret, "site": s.t.site,
		"api_url": s.px.URL, "tidy_interval": 0, "watch_interval": "1m", "last_use_lag": watchLastUseLag}); err != nil {
		return err
	}
	role, err := s.writeRole(ctx, m, "widle", "watch", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none",
		"ttl": "10m", "max_ttl": "1h", "idle_ttl": watchIdleTTL})
	if err != nil {
		return err
	}
	w := &watchRun{started: time.Now()}
	if w.idle, err = s.issue(ctx, m, role, "watch", nil); err != nil {
		return err
	}
	if w.used, err = s.issue(ctx, m, role, "watch", nil); err != nil {
		return err
	}
	if err := s.checkWorks(ctx, w.used, "an application key"); err != nil {
		return err
	}
	detail := "an unused credential (idle_ttl " + watchIdleTTL + ") and one used every 5s"
	if s.t.mode == "emulator" {
		leakRole, err := s.writeRole(ctx, m, "wleak", "watch", map[string]any{"scopes": "dashboards_read", "api_key_mode": "none",
			"ttl": "10m", "max_ttl": "1h"})
		if err != nil {
			return err
		}
		if w.leak, err = s.issue(ctx, m, leakRole, "watch", nil); err != nil {
			return err
		}
		if status, _, err := s.admin(ctx, http.MethodPost, "/_emulator/keys/"+w.leak.AppKeyID+"/leak", map[string]any{"source": "github"}); err != nil || status != http.StatusOK {
			return fmt.Errorf("flagging a key as leaked in the emulator: %d %v", status, err)
		}
		if status, _, err := s.admin(ctx, http.MethodPost, "/_emulator/keys/"+w.idle.AppKeyID+"/backdate", map[string]any{"by": "10m"}); err != nil || status != http.StatusOK {
			return fmt.Errorf("backdating a key in the emulator: %d %v", status, err)
		}
		detail += ", one flagged as leaked (the emulator's admin endpoint), the unused one backdated 10m"
	}
	// The used credential is used until the check.
	useCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-useCtx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			a := s.dd.readDashboards(useCtx, s.consumer(w.used), false)
			w.usedMu.Lock()
			w.usedCalls++
			if a.Status != http.StatusOK && a.Status != 0 && w.usedRefusedAnswer == "" {
				w.usedRefusedAnswer = a.String()
			}
			w.usedMu.Unlock()
		}
	}()
	w.stop = func() { stop(); <-done }
	s.stopUsed = w.stop
	s.watchState = w
	s.row("watch").Detail = detail
	return nil
}

// watchFinish waits for a watch run that started after the credentials
// were issued to kill the idle (and leaked) one, and checks what that left.
func (s *suite) watchFinish(ctx context.Context) error {
	w := s.watchState
	m := s.watchMount
	deadline := w.started.Add(watchTimeout)
	var status map[string]any
	for {
		st, err := s.read(ctx, m.path+"/watch/status")
		if err != nil {
			return err
		}
		status = st.Data
		startedAt, _ := time.Parse(time.RFC3339, fmt.Sprint(status["started_at"]))
		idle, _ := status["idle"].(json.Number).Int64()
		leaked, _ := status["leaked"].(json.Number).Int64()
		done := status["state"] == "finished" && !startedAt.Before(w.started.Truncate(time.Second)) && idle >= 1 && (w.leak == nil || leaked >= 1)
		if done {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no watch run killed the idle credential%s within %s of its issue (watch/status: %v)",
				map[bool]string{true: " and the leaked one", false: ""}[w.leak != nil], watchTimeout, s.red.scrub(fmt.Sprint(status)))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	w.stop()
	s.stopUsed = nil
	took := time.Since(w.started)

	var problems []string
	renewRefused := func(c *issued, because string) {
		_, err := s.vc.Sys().RenewWithContext(ctx, c.leaseID, 0)
		msg := s.red.scrub(vaultMessage(err))
		if err == nil || !strings.Contains(msg, because) {
			problems = append(problems, fmt.Sprintf("renewing a lease the watch killed as %s: %v %q", because, err == nil, msg))
		}
	}
	renewRefused(w.idle, "idle_ttl")
	if _, err := s.checkGone(ctx, "an idle credential the watch deleted", func(probe bool) answer {
		return s.dd.readDashboards(ctx, s.consumer(w.idle), probe)
	}); err != nil {
		problems = append(problems, err.Error())
	}
	if w.leak != nil {
		renewRefused(w.leak, "leaked")
		if _, err := s.checkGone(ctx, "a leaked credential the watch deleted", func(probe bool) answer {
			return s.dd.readDashboards(ctx, s.consumer(w.leak), probe)
		}); err != nil {
			problems = append(problems, err.Error())
		}
	}
	// The used one lives on.
	w.usedMu.Lock()
	calls, refused := w.usedCalls, w.usedRefusedAnswer
	w.usedMu.Unlock()
	usedNote := fmt.Sprintf("the used one stayed (%d uses)", calls)
	if _, err := s.vc.Sys().RenewWithContext(ctx, w.used.leaseID, 0); err != nil || refused != "" {
		killed := fmt.Sprintf("the credential used every 5s was killed too (renewal: %s; its use got %s)", s.red.scrub(vaultMessage(err)), refused)
		if s.t.mode == "emulator" {
			problems = append(problems, killed)
		} else {
			// This run set last_use_lag to 20s; the engine's default is 1h.
			usedNote = killed + ": Datadog reported its use later than the last_use_lag of " + watchLastUseLag +
				" this run configured (see the fact \"last use reported at once\")"
		}
	}
	for _, c := range []*issued{w.idle, w.used, w.leak} {
		if c != nil {
			if err := s.revoke(ctx, c); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	r := s.row("watch")
	r.Detail = fmt.Sprintf("%s; killed by a watch run %.0fs after issue (checked %v, idle %v, leaked %v); %s",
		r.Detail, took.Seconds(), status["checked"], status["idle"], status["leaked"], usedNote)
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

func pidOf() int { return os.Getpid() }

// readMonitorsProbe is readMonitors, optionally as a probe.
func (d *dd) readMonitorsProbe(ctx context.Context, c creds, probe bool) answer {
	if !probe {
		return d.readMonitors(ctx, c)
	}
	_, resp, err := d.probe.monitors.ListMonitors(d.ctx(ctx, c), *datadogV1.NewListMonitorsOptionalParameters().WithPageSize(1))
	return answerOf(resp, err)
}
