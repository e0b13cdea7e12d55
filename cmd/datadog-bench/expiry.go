package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// expiryReport is what the mass expiry found.
type expiryReport struct {
	leases      int
	clients     int // that issued them
	ttl         time.Duration
	limit       int // Datadog deletions per second
	issue       time.Duration
	issueWindow time.Duration // from the first creds request sent to the last answer
	withLeases  memory
	storage     *storageUse   // nil when sys/raw could not be read
	lateStart   time.Duration // how long leases were already expiring when the limit was set; 0 normally
	cleared     time.Duration // from the first expiry until the emulator held no key of the engine; -1 if it never did
	leasesGone  time.Duration // from the first expiry until Vault held none of the leases; -1 if it never did
	refused     int64         // Datadog's 429 answers during the expiry
	irrevocable int
}

// bound is the least time the deletions can take under the rate limit.
func (r *expiryReport) bound() time.Duration {
	return time.Duration(float64(r.leases) / float64(r.limit) * float64(time.Second))
}

// massExpiry issues opts.leases leases of the expiry role (a service
// account's application keys: the service account owns nothing else, so
// all of Datadog's 1000 keys per owner are theirs), sizes their storage
// and the plugin's memory, then lets them expire together while Datadog
// allows deleteLimit application key calls per second, and times how long
// it takes until every key is gone.
func (e *env) massExpiry() (*expiryReport, error) {
	r := &expiryReport{leases: e.opts.leases, ttl: e.opts.leaseTTL, limit: e.opts.deleteLimit}
	mount, err := e.admin.Sys().GetMount(engineMount)
	if err != nil {
		return nil, err
	}
	prefixes := []string{"sys/expire/", "logical/" + mount.UUID + "/"}
	before, err := e.storageUse(prefixes)
	if err != nil {
		progress("%s: storage is not sized: %v", e.s.kind, err)
	}

	progress("%s: issuing %d leases of TTL %s", e.s.kind, r.leases, e.opts.leaseTTL)
	workers := e.workers[:min(16, len(e.workers))]
	r.clients = len(workers)
	var issued atomic.Int64
	var firstSent, lastAnswered time.Time
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	firstSent = time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for issued.Add(1) <= int64(r.leases) {
				secret, err := w.vault.Logical().Read(engineMount + "/creds/expiry")
				if err == nil && (secret == nil || secret.LeaseID == "") {
					err = fmt.Errorf("reading %s/creds/expiry returned no lease", engineMount)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				lastAnswered = time.Now()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.issue = time.Since(firstSent)
	r.issueWindow = lastAnswered.Sub(firstSent)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d creds reads failed, the first: %w", len(errs), r.leases, errs[0])
	}
	if r.withLeases, err = e.memory(); err != nil {
		return nil, err
	}
	if before != nil {
		after, err := e.storageUse(prefixes)
		if err != nil {
			progress("%s: storage is not sized: %v", e.s.kind, err)
		} else {
			r.storage = after.minus(before, mount.UUID)
		}
	}

	// Issue is timed at Vault, after the request was sent: the first lease
	// cannot expire before firstSent+TTL.
	firstExpiry := firstSent.Add(e.opts.leaseTTL)
	e.dd.tooMany.Store(0)
	if err := e.dd.SetRateLimit("application_keys", emulator.RateLimit{Limit: r.limit, Period: time.Second}); err != nil {
		return nil, err
	}
	defer e.dd.SetRateLimit("application_keys", emulator.RateLimit{})
	if late := time.Since(firstExpiry); late > 0 {
		r.lateStart = late
	}
	progress("%s: %d leases expire from %s; waiting for their keys to be deleted at %d per second",
		e.s.kind, r.leases, firstExpiry.Format("15:04:05"), r.limit)

	r.cleared, r.leasesGone = -1, -1
	deadline := firstExpiry.Add(4*r.bound() + 2*time.Minute)
	for time.Now().Before(deadline) && (r.cleared < 0 || r.leasesGone < 0) {
		time.Sleep(100 * time.Millisecond)
		if r.cleared < 0 && e.dd.engineKeys() == 0 {
			r.cleared = time.Since(firstExpiry)
		}
		if r.leasesGone < 0 {
			if n, err := e.liveLeases(engineMount + "/creds/expiry/"); err == nil && n == 0 {
				r.leasesGone = time.Since(firstExpiry)
			}
		}
	}
	r.refused = e.dd.tooMany.Load()
	if r.irrevocable, err = e.irrevocableLeases(mount.Accessor); err != nil {
		return nil, err
	}
	return r, nil
}

// liveLeases counts Vault's leases under a prefix.
func (e *env) liveLeases(prefix string) (int, error) {
	secret, err := e.admin.Logical().List("sys/leases/lookup/" + prefix)
	if err != nil || secret == nil {
		return 0, err
	}
	keys, _ := secret.Data["keys"].([]any)
	return len(keys), nil
}

// irrevocableLeases counts the leases of the mount that Vault gave up
// revoking.
func (e *env) irrevocableLeases(accessor string) (int, error) {
	counts, err := e.admin.Logical().ReadWithData("sys/leases/count", map[string][]string{"type": {"irrevocable"}})
	if err != nil {
		return 0, fmt.Errorf("counting irrevocable leases: %w", err)
	}
	if counts == nil {
		return 0, nil
	}
	byMount, _ := counts.Data["counts"].(map[string]any)
	n, _ := byMount[accessor].(json.Number)
	count, _ := n.Int64() // absent: none
	return int(count), nil
}

// storageUse is the number and size of storage entries under some
// prefixes, grouped by the part of their path that says what they are.
type storageUse struct {
	entries map[string]int
	bytes   map[string]int64
}

// barrierOverhead is what Vault's encryption adds to each entry it stores
// (key term, version, nonce, GCM tag); sys/raw returns the plaintext.
const barrierOverhead = 4 + 1 + 12 + 16

// storageUse walks the prefixes through sys/raw (root only, with
// raw_storage_endpoint set), reading each entry as stored, without
// decompressing it.
func (e *env) storageUse(prefixes []string) (*storageUse, error) {
	u := &storageUse{entries: map[string]int{}, bytes: map[string]int64{}}
	var paths []string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		secret, err := e.admin.Logical().List("sys/raw/" + prefix)
		if err != nil || secret == nil {
			return err
		}
		keys, _ := secret.Data["keys"].([]any)
		for _, k := range keys {
			key, _ := k.(string)
			if strings.HasSuffix(key, "/") {
				if err := walk(prefix + key); err != nil {
					return err
				}
				continue
			}
			paths = append(paths, prefix+key)
		}
		return nil
	}
	for _, p := range prefixes {
		if err := walk(p); err != nil {
			return nil, err
		}
	}

	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for _, w := range e.workers[:min(8, len(e.workers))] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range work {
				size, err := rawSize(w.vault, path)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				group := storageGroup(path)
				u.entries[group]++
				u.bytes[group] += int64(len(path)) + size + barrierOverhead
				mu.Unlock()
			}
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return u, firstErr
}

// rawSize is the size of an entry as stored (before encryption).
func rawSize(client *api.Client, path string) (int64, error) {
	secret, err := client.Logical().ReadWithData("sys/raw/"+path, map[string][]string{"encoding": {"base64"}, "compressed": {"false"}})
	if err != nil || secret == nil {
		return 0, err // an entry deleted since it was listed has no size
	}
	value, _ := secret.Data["value"].(string)
	b, err := base64.StdEncoding.DecodeString(value)
	return int64(len(b)), err
}

// storageGroup names what an entry is by its path: sys/expire/id/ (Vault's
// lease entries), sys/expire/token/ (its index of leases by token), and
// the first segment of the engine's own paths.
func storageGroup(path string) string {
	parts := strings.SplitAfter(path, "/")
	switch {
	case strings.HasPrefix(path, "sys/expire/") && len(parts) > 3:
		return strings.Join(parts[:3], "")
	case strings.HasPrefix(path, "logical/") && len(parts) > 3:
		return strings.Join(parts[:3], "")
	}
	return path
}

// minus is what was added since before, per lease of the mass expiry.
func (u *storageUse) minus(before *storageUse, mountUUID string) *storageUse {
	out := &storageUse{entries: map[string]int{}, bytes: map[string]int64{}}
	for group, n := range u.entries {
		name := strings.Replace(group, mountUUID, "<engine mount>", 1)
		if d := n - before.entries[group]; d != 0 {
			out.entries[name] = d
			out.bytes[name] = u.bytes[group] - before.bytes[group]
		}
	}
	return out
}
