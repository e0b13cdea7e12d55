package emulator

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RateLimit is a request budget: Limit requests per Period, in fixed
// windows of the emulator's clock that start with the first request.
type RateLimit struct {
	Limit  int
	Period time.Duration
}

// rateLimitGroups are the endpoint groups that share a budget, named as in
// Datadog's X-RateLimit-Name.
var rateLimitGroups = []string{
	"access_tokens", "api_keys", "application_keys", "dashboards", "events", "monitors", "roles", "users", "validate",
}

// RateLimitGroups lists the groups rate limits can be set for.
func RateLimitGroups() []string { return slices.Clone(rateLimitGroups) }

// ParseRateLimit reads "group=limit/period", e.g. "api_keys=100/10s", the
// form of the -rate-limit flag.
func ParseRateLimit(s string) (string, RateLimit, error) {
	group, budget, found := strings.Cut(s, "=")
	limit, period, found2 := strings.Cut(budget, "/")
	if !found || !found2 {
		return "", RateLimit{}, fmt.Errorf("rate limit %q is not of the form group=limit/period", s)
	}
	n, err := strconv.Atoi(limit)
	if err != nil {
		return "", RateLimit{}, fmt.Errorf("rate limit %q: limit: %w", s, err)
	}
	d, err := time.ParseDuration(period)
	if err != nil {
		return "", RateLimit{}, fmt.Errorf("rate limit %q: period: %w", s, err)
	}
	return group, RateLimit{Limit: n, Period: d}, nil
}

func (l RateLimit) MarshalJSON() ([]byte, error) {
	return json.Marshal(rateLimitJSON{Limit: l.Limit, Period: jsonDuration(l.Period)})
}

func (l *RateLimit) UnmarshalJSON(b []byte) error {
	var w rateLimitJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*l = RateLimit{Limit: w.Limit, Period: time.Duration(w.Period)}
	return nil
}

type rateLimitJSON struct {
	Limit  int          `json:"limit"`
	Period jsonDuration `json:"period"`
}

// jsonDuration is a duration written as Go writes it ("10s"), and read from
// that or from a number of seconds.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var seconds float64
	if err := json.Unmarshal(b, &seconds); err == nil {
		*d = jsonDuration(seconds * float64(time.Second))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"10s\" or a number of seconds")
	}
	parsed, err := time.ParseDuration(s)
	*d = jsonDuration(parsed)
	return err
}

// bucket is one group's budget and its current window.
type bucket struct {
	limit RateLimit
	start time.Time // of the current window; zero before the first request
	used  int
}

// SetRateLimit sets the budget of an endpoint group. A zero Limit removes
// it: the group is then not limited.
func (e *Emulator) SetRateLimit(group string, l RateLimit) error {
	if !slices.Contains(rateLimitGroups, group) {
		return fmt.Errorf("unknown rate-limit group %q (known: %s)", group, strings.Join(rateLimitGroups, ", "))
	}
	if l.Limit < 0 || l.Limit > 0 && l.Period < time.Second {
		return fmt.Errorf("rate limit for %s: need a limit of at least 1 per period of at least 1s", group)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Limit == 0 {
		delete(e.limits, group)
	} else {
		e.limits[group] = &bucket{limit: l}
	}
	return nil
}

// RateLimits returns the budgets set, by group.
func (e *Emulator) RateLimits() map[string]RateLimit {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]RateLimit{}
	for group, b := range e.limits {
		out[group] = b.limit
	}
	return out
}

var rateLimited = errorResponse(http.StatusTooManyRequests, "Rate limit exceeded")

// takeRate spends one request of the group's budget. It returns the
// X-RateLimit headers (nil for an unlimited group) and whether the request
// may proceed. Callers hold e.mu.
func (e *Emulator) takeRate(group string) (http.Header, bool) {
	b := e.limits[group]
	if b == nil {
		return nil, true
	}
	now := e.now()
	if b.start.IsZero() || !now.Before(b.start.Add(b.limit.Period)) {
		b.start, b.used = now, 0
	}
	allowed := b.used < b.limit.Limit
	if allowed {
		b.used++
	}
	return rateHeaders(group, b.limit, b.limit.Limit-b.used, b.start.Add(b.limit.Period).Sub(now)), allowed
}

// injectedRateLimit is the 429 of a rate_limit fault: the group's headers
// with nothing remaining, or, for a group without a budget, those of a
// spent one-per-second budget.
func (e *Emulator) injectedRateLimit(group string) response {
	e.mu.Lock()
	defer e.mu.Unlock()
	limit, reset := RateLimit{Limit: 1, Period: time.Second}, time.Second
	if b := e.limits[group]; b != nil {
		limit, reset = b.limit, b.limit.Period
		if !b.start.IsZero() {
			reset = b.start.Add(b.limit.Period).Sub(e.now())
		}
	}
	resp := rateLimited
	resp.header = rateHeaders(group, limit, 0, reset)
	return resp
}

func rateHeaders(group string, l RateLimit, remaining int, reset time.Duration) http.Header {
	h := http.Header{}
	h.Set("X-RateLimit-Name", group)
	h.Set("X-RateLimit-Limit", strconv.Itoa(l.Limit))
	h.Set("X-RateLimit-Period", strconv.Itoa(int(l.Period.Seconds())))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(remaining, 0)))
	h.Set("X-RateLimit-Reset", strconv.Itoa(int(math.Ceil(max(reset, 0).Seconds()))))
	return h
}
