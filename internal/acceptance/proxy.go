package acceptance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
)

// proxy sits on loopback between Datadog and everything the run sends it:
// the engine inside Vault (config's api_url points here) and the suite's
// own clients. It forwards every call unchanged to the target (the real
// site's API, DD_API_URL, or the emulator), and on the way counts the
// calls of each scenario, reads Datadog's X-RateLimit-* headers, and,
// when recording, keeps each exchange, redacted. It is a plain
// httputil.ReverseProxy: it never makes a call of its own.
type proxy struct {
	target   *url.URL
	server   *http.Server
	URL      string // http://127.0.0.1:PORT
	redactor *redactor
	record   bool
	recBase  string // the URL base written in recordings: https://api.<site>

	seq      atomic.Int64
	scenario atomic.Value // string: the scenario calls are counted against

	mu           sync.Mutex
	calls        map[string]int // per scenario
	byCaller     map[string]int
	interactions map[string][]cassette.Interaction // per scenario
	limits       map[string]*rateLimitSeen
	routes       map[string]string // route (a path without its ids) → the rate limit Datadog named for it
}

// rateLimitSeen is what Datadog's X-RateLimit-* headers said of one limit
// during the run.
type rateLimitSeen struct {
	Name          string
	Limit, Period int
	MinRemaining  int
	Refused       int // 429 answers

	remaining int       // as last seen
	resetAt   time.Time // when the window ends, as last seen
}

func startProxy(target *url.URL, red *redactor, record bool, recBase string) (*proxy, error) {
	p := &proxy{
		target:       target,
		redactor:     red,
		record:       record,
		recBase:      recBase,
		calls:        map[string]int{},
		byCaller:     map[string]int{},
		interactions: map[string][]cassette.Interaction{},
		limits:       map[string]*rateLimitSeen{},
		routes:       map[string]string{},
	}
	p.scenario.Store("setup")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// The transport asks for gzip itself and unpacks it, so that
			// the recorded body is plain.
			pr.Out.Header.Del("Accept-Encoding")
			for name := range pr.Out.Header {
				if strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Acceptance-") {
					pr.Out.Header.Del(name)
				}
			}
			// No X-Forwarded-For: Datadog has no use for the loopback address.
			pr.Out.Header.Del("X-Forwarded-For")
		},
		ModifyResponse: p.observe,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.finish(r, nil, nil, err)
			w.WriteHeader(http.StatusBadGateway)
		},
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	p.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's body is read first, for the recording, and handed on.
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		ctx := context.WithValue(r.Context(), callKey{}, &call{
			id:       int(p.seq.Add(1)),
			scenario: p.scenario.Load().(string),
			sent:     time.Now(),
			body:     body,
			caller:   r.Header.Get(cassette.HeaderCaller),
			note:     r.Header.Get(cassette.HeaderNote),
		})
		rp.ServeHTTP(w, r.WithContext(ctx))
	}), ReadHeaderTimeout: 10 * time.Second}
	go p.server.Serve(ln)
	return p, nil
}

type callKey struct{}

// call is one request on its way through the proxy.
type call struct {
	id       int
	scenario string
	sent     time.Time
	body     []byte
	caller   string // the suite's annotation; "" for the engine
	note     string
}

// setScenario attributes the calls sent from now on to a scenario.
func (p *proxy) setScenario(name string) { p.scenario.Store(name) }

func (p *proxy) observe(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	if err != nil {
		return err
	}
	p.finish(resp.Request, resp, body, nil)
	return nil
}

// finish counts a call and records it. resp is nil when no answer came.
func (p *proxy) finish(r *http.Request, resp *http.Response, body []byte, failure error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	if c == nil {
		return
	}
	caller := c.caller
	if caller == "" {
		caller = "engine"
	}
	admin := strings.HasPrefix(r.URL.Path, "/_emulator/")
	p.mu.Lock()
	defer p.mu.Unlock()
	if !admin {
		p.calls[c.scenario]++
		p.byCaller[caller]++
	}
	if resp != nil {
		p.noteRateLimit(resp)
	}
	if !p.record {
		return
	}
	in := cassette.Interaction{}
	reqBody := p.redactor.JSON(c.body)
	if admin {
		// The emulator's own admin calls carry no one's data (durations,
		// a leak's source): only secrets and ids are replaced.
		reqBody = p.redactor.scrub(string(c.body))
	}
	in.Request = cassette.Request{
		Body:    reqBody,
		Form:    map[string][]string{},
		Headers: map[string][]string{},
		ID:      c.id,
		Method:  r.Method,
		URL:     p.redactor.URL(r.URL, p.recBase),
	}
	for _, name := range []string{"Accept", "Content-Type"} {
		if v := r.Header.Get(name); v != "" {
			in.Request.Headers[name] = []string{v}
		}
	}
	for _, name := range []string{"DD-API-KEY", "DD-APPLICATION-KEY", "Authorization"} {
		if v := r.Header.Get(name); v != "" {
			in.Request.Headers[name] = []string{p.redactor.Header(name, v)}
		}
	}
	in.Request.Headers[cassette.HeaderCaller] = []string{caller}
	in.Request.Headers[cassette.HeaderScenario] = []string{c.scenario}
	in.Request.Headers[cassette.HeaderSentAt] = []string{c.sent.UTC().Format(time.RFC3339Nano)}
	if c.note != "" {
		in.Request.Headers[cassette.HeaderNote] = []string{c.note}
	}
	in.Response.Headers = map[string][]string{}
	in.Response.Duration = fmt.Sprintf("%dms", time.Since(c.sent).Milliseconds())
	if resp == nil {
		in.Response.Code = http.StatusBadGateway
		in.Response.Status = "502 Bad Gateway"
		in.Response.Body = p.redactor.JSON(fmt.Appendf(nil, `{"errors":[%q]}`, "no answer (recorded by the suite's proxy): "+failure.Error()))
	} else {
		in.Response.Code = resp.StatusCode
		in.Response.Status = resp.Status
		in.Response.Body = p.redactor.JSON(body)
		for name, values := range resp.Header {
			if name == "Content-Type" || strings.HasPrefix(name, "X-Ratelimit-") {
				in.Response.Headers[name] = slices.Clone(values)
			}
		}
	}
	p.interactions[c.scenario] = append(p.interactions[c.scenario], in)
}

// noteRateLimit reads Datadog's rate-limit headers. Callers hold p.mu.
func (p *proxy) noteRateLimit(resp *http.Response) {
	name := resp.Header.Get("X-Ratelimit-Name")
	if name == "" {
		return
	}
	atoi := func(h string) int { n, _ := strconv.Atoi(resp.Header.Get(h)); return n }
	seen := p.limits[name]
	if seen == nil {
		seen = &rateLimitSeen{Name: name, MinRemaining: atoi("X-Ratelimit-Remaining")}
		p.limits[name] = seen
	}
	seen.Limit, seen.Period = atoi("X-Ratelimit-Limit"), atoi("X-Ratelimit-Period")
	seen.remaining = atoi("X-Ratelimit-Remaining")
	seen.MinRemaining = min(seen.MinRemaining, seen.remaining)
	seen.resetAt = time.Now().Add(time.Duration(atoi("X-Ratelimit-Reset")) * time.Second)
	if resp.StatusCode == http.StatusTooManyRequests {
		seen.Refused++
		seen.remaining = 0
	}
	p.routes[routeOf(resp.Request.URL.Path)] = name
}

// routeOf is a path without its identifiers: the calls Datadog counts
// against one rate limit share it.
func routeOf(path string) string {
	var keep []string
	for _, seg := range strings.Split(path, "/") {
		if seg != "" && !reUUID.MatchString(seg) {
			keep = append(keep, seg)
		}
	}
	return strings.Join(keep, "/")
}

// waitRateLimit holds one of the suite's calls while the rate limit its
// route last answered under is spent, until the window Datadog announced
// ends: the suite never spends the engine's last calls, nor earns a 429.
func (p *proxy) waitRateLimit(ctx context.Context, path string) error {
	p.mu.Lock()
	var wait time.Duration
	if seen := p.limits[p.routes[routeOf(path)]]; seen != nil && seen.remaining <= 1 {
		wait = time.Until(seen.resetAt)
	}
	p.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callsOf returns the calls counted against a scenario.
func (p *proxy) callsOf(scenario string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[scenario]
}

// totals returns every call counted, by caller.
func (p *proxy) totals() (all int, byCaller map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byCaller = map[string]int{}
	for k, v := range p.byCaller {
		byCaller[k] = v
		all += v
	}
	return all, byCaller
}

// rateLimits returns what the run saw of Datadog's rate limits.
func (p *proxy) rateLimits() []rateLimitSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []rateLimitSeen
	for _, l := range p.limits {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b rateLimitSeen) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// recorded returns the interactions of each scenario, in the order sent.
func (p *proxy) recorded() map[string][]cassette.Interaction {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]cassette.Interaction{}
	for k, v := range p.interactions {
		s := slices.Clone(v)
		slices.SortFunc(s, func(a, b cassette.Interaction) int { return a.Request.ID - b.Request.ID })
		out[k] = s
	}
	return out
}

func (p *proxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.server.Shutdown(ctx)
}
