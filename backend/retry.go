package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
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
	// rateLimitJitter spreads the callers that waited for the same reset.
	rateLimitJitter = 500 * time.Millisecond
)

// call runs one Datadog API call. A 429 was refused before anything was
// done, so every call waits for the reset Datadog announces
// (X-RateLimit-Reset) and is sent again; a 5xx or a lost answer may hide a
// change that was applied, so only calls that are safe to repeat (reads and
// deletions) are sent again then, with capped exponential back-off and
// jitter. Waits that would not end before the caller's deadline are not
// started: the last error is returned at once.
func (c *datadogClient) call(ctx context.Context, op string, safeToRepeat bool, send func(context.Context) (*http.Response, error)) error {
	deadline := time.Now().Add(retryWindow)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(-retryMargin)
	}
	for attempt := 0; ; attempt++ {
		if wait := c.limits.before(op); wait > 0 {
			if time.Now().Add(wait).After(deadline) {
				return c.limits.exhausted(op, wait)
			}
			if err := sleep(ctx, wait); err != nil {
				return &apiError{Op: op, Err: err}
			}
		}
		resp, err := send(c.with(ctx))
		c.limits.observe(op, resp)
		if err == nil {
			return nil
		}
		failure := wrapError(op, resp, err)

		var wait time.Duration
		status := httpStatus(failure)
		switch {
		case ctx.Err() != nil, errors.Is(err, errRedirectRefused):
			return failure
		case status == http.StatusTooManyRequests:
			wait = resetAfter(resp) + rand.N(rateLimitJitter)
		case safeToRepeat && (status == 0 || status >= 500):
			wait = backoff(attempt)
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

// resetAfter reads X-RateLimit-Reset (seconds until the window resets).
func resetAfter(resp *http.Response) time.Duration {
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Reset")); err == nil && s >= 0 {
			return time.Duration(s) * time.Second
		}
	}
	return time.Second
}

// rateLimits follows Datadog's rate-limit windows as its answers describe
// them (X-RateLimit-Name, -Limit, -Period, -Remaining, -Reset), so that
// concurrent callers wait for a spent window to reset instead of each
// meeting its own 429.
type rateLimits struct {
	mu      sync.Mutex
	groupOf map[string]string // call → rate-limit name, learnt from answers
	windows map[string]*rateWindow
}

type rateWindow struct {
	limit, period int // as announced
	remaining     int
	resetAt       time.Time
}

func newRateLimits() *rateLimits {
	return &rateLimits{groupOf: map[string]string{}, windows: map[string]*rateWindow{}}
}

// before returns how long a call must wait for its window to reset; when
// it may go now, it counts the call against the window.
func (r *rateLimits) before(op string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.windows[r.groupOf[op]]
	now := time.Now()
	if w == nil || !now.Before(w.resetAt) {
		return 0
	}
	if w.remaining <= 0 {
		return w.resetAt.Sub(now) + rand.N(rateLimitJitter)
	}
	w.remaining--
	return 0
}

// observe records the window an answer describes.
func (r *rateLimits) observe(op string, resp *http.Response) {
	if resp == nil {
		return
	}
	name := resp.Header.Get("X-RateLimit-Name")
	remaining, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
	if name == "" || err != nil {
		return
	}
	limit, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	period, _ := strconv.Atoi(resp.Header.Get("X-RateLimit-Period"))
	if resp.StatusCode == http.StatusTooManyRequests {
		remaining = 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groupOf[op] = name
	r.windows[name] = &rateWindow{limit: limit, period: period, remaining: remaining, resetAt: time.Now().Add(resetAfter(resp))}
}

// exhausted is the error of a call that cannot wait for its window to
// reset before the caller's deadline.
func (r *rateLimits) exhausted(op string, wait time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := r.groupOf[op]
	w := r.windows[name]
	return &apiError{Op: op, Status: http.StatusTooManyRequests, RateLimit: &rateLimitInfo{
		Name: name, Limit: w.limit, Period: w.period, ResetIn: wait.Round(time.Second),
	}, Err: errors.New("rate limit exhausted")}
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
