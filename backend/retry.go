package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Bounds of the waits between attempts of one Datadog call.
const (
	// retryMargin is left of the caller's deadline for the rest of its
	// work (further calls, storage) when deciding whether a wait fits.
	retryMargin = 5 * time.Second
	// retryWindow bounds the attempts of a call whose context has no
	// deadline, so that no call waits forever.
	retryWindow = 90 * time.Second
	backoffBase = 250 * time.Millisecond
	backoffCap  = 8 * time.Second
	// rateLimitJitter spreads the retries of a 429 without a window to
	// wait for.
	rateLimitJitter = 500 * time.Millisecond
)

// call runs one Datadog API call. A 429 was refused before anything was
// done, so every call waits for a free slot of the rate-limit window and is
// sent again; a 5xx or a lost answer may hide a change that was applied, so
// only calls that are safe to repeat (reads and deletions) are sent again
// then, with capped exponential back-off and jitter. Waits that would not
// end before the caller's deadline are not started: the call fails at once.
func (c *datadogClient) call(ctx context.Context, op string, safeToRepeat bool, send func(context.Context) (*http.Response, error)) error {
	deadline := time.Now().Add(retryWindow)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(-retryMargin)
	}
	for attempt := 0; ; {
		if err := c.limits.wait(ctx, op, deadline); err != nil {
			return err
		}
		sent := time.Now()
		resp, err := send(c.with(ctx))
		c.limits.observe(op, resp)
		failure := wrapError(op, resp, err)
		status := httpStatus(failure)
		if resp != nil && err == nil {
			status = resp.StatusCode
		}
		c.logger.Trace("Datadog call", "op", op, "status", status, "attempt", attempt+1, "duration", time.Since(sent), "error", failure)
		if err == nil {
			return nil
		}
		var wait time.Duration
		switch {
		case ctx.Err() != nil, errors.Is(err, errRedirectRefused):
			return failure
		case status == http.StatusTooManyRequests && resp.Header.Get("X-RateLimit-Name") != "":
			continue // the window is spent: wait for room in a later one
		case status == http.StatusTooManyRequests:
			wait = resetAfter(resp) + rand.N(rateLimitJitter) // no window to wait for
		case safeToRepeat && (status == 0 || status >= 500):
			wait = backoff(attempt)
			attempt++
		default:
			return failure
		}
		if time.Now().Add(wait).After(deadline) {
			return failure
		}
		if err := sleep(ctx, wait); err != nil {
			return failure
		}
	}
}

// backoff is the wait before attempt+1: exponential, capped, with jitter
// over its upper half.
func backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 6 {
		d = min(backoffBase<<attempt, backoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resetAfter reads X-RateLimit-Reset (whole seconds until the window
// resets), as at least a second: a window that ends within the second is
// not over for a caller whose 429 says it is spent.
func resetAfter(resp *http.Response) time.Duration {
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Reset")); err == nil && s > 1 {
			return time.Duration(s) * time.Second
		}
	}
	return time.Second
}

// rateLimits follows Datadog's rate-limit windows as its answers describe
// them (X-RateLimit-Name, -Limit, -Period, -Remaining, -Reset) and counts
// the calls sent in each, so that once a window is spent the callers wait
// for the next one instead of each meeting its own 429: a burst of calls (a
// thousand leases expiring together) is spread over the windows it needs.
// The first call of an operation goes alone: its answer tells which window
// it counts against.
type rateLimits struct {
	logger  hclog.Logger
	mu      sync.Mutex
	groupOf map[string]string        // call → rate-limit name ("" when unlimited), learnt from answers
	probing map[string]chan struct{} // call → closed when its first answer arrived
	windows map[string]*rateWindow
}

type rateWindow struct {
	limit     int
	period    time.Duration
	remaining int       // calls that may still be sent in the current window
	resetAt   time.Time // when the current window ends
}

func newRateLimits(logger hclog.Logger) *rateLimits {
	return &rateLimits{logger: logger, groupOf: map[string]string{}, probing: map[string]chan struct{}{}, windows: map[string]*rateWindow{}}
}

// wait returns when the call may be sent, or an error when no window will
// have room for it before the deadline.
func (r *rateLimits) wait(ctx context.Context, op string, deadline time.Time) error {
	for {
		r.mu.Lock()
		group, known := r.groupOf[op]
		if !known {
			first, inFlight := r.probing[op]
			if !inFlight {
				r.probing[op] = make(chan struct{})
				r.mu.Unlock()
				return nil
			}
			r.mu.Unlock()
			select {
			case <-first:
				continue
			case <-ctx.Done():
				return &apiError{Op: op, Err: ctx.Err()}
			}
		}
		w := r.windows[group]
		now := time.Now()
		if w == nil {
			r.mu.Unlock()
			return nil
		}
		if !now.Before(w.resetAt) { // a new window, as far as we know until an answer says
			w.remaining, w.resetAt = w.limit, now.Add(w.period)
		}
		if w.remaining > 0 {
			w.remaining--
			r.mu.Unlock()
			return nil
		}
		until, info := w.resetAt, &rateLimitInfo{Name: group, Limit: w.limit, Period: int(w.period.Seconds()), ResetIn: w.resetAt.Sub(now).Round(time.Second)}
		r.mu.Unlock()
		if until.After(deadline) {
			return &apiError{Op: op, Status: http.StatusTooManyRequests, RateLimit: info, Err: errors.New("rate limit spent")}
		}
		r.logger.Debug("waiting for Datadog's rate-limit window", "op", op, "limit", info.Name, "wait", until.Sub(now))
		if err := sleep(ctx, until.Sub(now)); err != nil {
			return &apiError{Op: op, Err: err}
		}
	}
}

// observe records what an answer (nil when none came) says of its window.
// Answers of calls sent earlier in the same window may arrive after later
// calls were sent: within a window, they only ever lower what remains.
func (r *rateLimits) observe(op string, resp *http.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first, probing := r.probing[op]; probing {
		close(first)
		delete(r.probing, op)
	}
	if resp == nil {
		return
	}
	name := resp.Header.Get("X-RateLimit-Name")
	remaining, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
	if name == "" || err != nil {
		r.groupOf[op] = ""
		return
	}
	r.groupOf[op] = name
	if resp.StatusCode == http.StatusTooManyRequests {
		remaining = 0
	}
	limit, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	period, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Period"))
	resetAt := time.Now().Add(resetAfter(resp))
	w := r.windows[name]
	if w == nil {
		w = &rateWindow{}
		r.windows[name] = w
	}
	w.limit, w.period = max(limit, 1), max(time.Duration(period)*time.Second, time.Second)
	switch gap := resetAt.Sub(w.resetAt); {
	case gap > w.period/2: // a later window than the one we count in
		w.remaining, w.resetAt = remaining, resetAt
	case gap > -w.period/2: // the same window
		w.remaining, w.resetAt = min(w.remaining, remaining), maxTime(w.resetAt, resetAt)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// rateLimitInfo describes the Datadog rate limit a call ran into.
type rateLimitInfo struct {
	Name          string
	Limit, Period int // requests per period (seconds)
	ResetIn       time.Duration
}

func rateLimitOf(resp *http.Response) *rateLimitInfo {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return nil
	}
	limit, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	period, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Period"))
	return &rateLimitInfo{Name: resp.Header.Get("X-RateLimit-Name"), Limit: limit, Period: period, ResetIn: resetAfter(resp)}
}
