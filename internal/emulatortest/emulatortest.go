// Package emulatortest starts the Datadog API emulator for tests, with every
// request it receives and every response it sends checked against Datadog's
// OpenAPI specification (the one shipped in datadog-api-client-go). A
// mismatch fails the test that caused it, naming the operation and the field,
// so neither the plugin nor the emulator can drift from the real API unseen.
package emulatortest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

const clientModule = "github.com/DataDog/datadog-api-client-go/v2"

// Server is an emulator listening on loopback.
type Server struct {
	*emulator.Emulator
	URL      string
	requests atomic.Int64
	answers  sync.Map // HTTP status → *atomic.Int64
}

// Requests is how many Datadog API calls the emulator has answered.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Answers is how many Datadog API calls the emulator answered with status.
func (s *Server) Answers(status int) int64 {
	n, _ := s.answers.Load(status)
	if n == nil {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// Start runs an emulator for the test's duration, validating traffic against
// the specification.
func Start(t testing.TB, opts emulator.Options) *Server {
	t.Helper()
	return Serve(t, emulator.New(opts))
}

// Serve is Start for an emulator the test made itself (with emulator.Open,
// say).
func Serve(t testing.TB, emu *emulator.Emulator) *Server {
	t.Helper()
	s := &Server{Emulator: emu}
	checked := Handler(t, emu, &s.requests)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := &emulator.StatusRecorder{ResponseWriter: w}
		checked.ServeHTTP(status, r)
		if status.Status != 0 && !strings.HasPrefix(r.URL.Path, "/_emulator/") {
			n, _ := s.answers.LoadOrStore(status.Status, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Handler serves with emu, reporting every departure from the
// specification as an error of t; calls, if not nil, counts the Datadog API
// calls served. It is for tests that drive the handler without a network.
func Handler(t testing.TB, emu *emulator.Emulator, calls *atomic.Int64) http.Handler {
	t.Helper()
	spec, err := loadSpecs()
	if err != nil {
		t.Fatalf("loading Datadog's OpenAPI specification: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_emulator/") {
			emu.ServeHTTP(w, r)
			return
		}
		if calls != nil {
			calls.Add(1)
		}
		for _, problem := range spec.check(emu, w, r) {
			t.Errorf("Datadog API specification mismatch: %s", problem)
		}
	})
}

// validated records the operations whose traffic was checked, by
// operationId, across the test binary.
var validated sync.Map

// ValidatedOperations lists, sorted, the operationIds of every operation
// whose request and response this test binary has checked against the
// specification.
func ValidatedOperations() []string {
	var ids []string
	validated.Range(func(id, _ any) bool {
		ids = append(ids, id.(string))
		return true
	})
	slices.Sort(ids)
	return ids
}

// specs routes requests to the v1 or v2 specification.
type specs struct {
	v1, v2 routers.Router
}

var (
	loadOnce  sync.Once
	loaded    *specs
	loadError error
)

// loadSpecs reads the 9 MB specifications once per test binary.
func loadSpecs() (*specs, error) {
	loadOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", clientModule).Output()
		if err != nil {
			loadError = fmt.Errorf("locating %s: %w", clientModule, err)
			return
		}
		dir := filepath.Join(strings.TrimSpace(string(out)), ".generator", "schemas")
		loaded = &specs{}
		if loaded.v1, loadError = loadRouter(filepath.Join(dir, "v1", "openapi.yaml")); loadError != nil {
			return
		}
		loaded.v2, loadError = loadRouter(filepath.Join(dir, "v2", "openapi.yaml"))
	})
	return loaded, loadError
}

func loadRouter(path string) (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	// Match on paths only: the emulator is not at Datadog's host names.
	doc.Servers = nil
	for _, item := range doc.Paths.Map() {
		item.Servers = nil
	}
	return gorillamux.NewRouter(doc)
}

var options = &openapi3filter.Options{
	// Authentication is the emulator's own job, checked by its tests.
	AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	MultiError:         true,
	// The emulator must see the request as the client sent it, not with
	// the spec's defaults written in.
	SkipSettingDefaults: true,
}

// check serves r with the emulator and returns every way in which the
// request or the response departs from the specification.
func (s *specs) check(handler http.Handler, w http.ResponseWriter, r *http.Request) []string {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))

	router := s.v2
	if strings.HasPrefix(r.URL.Path, "/api/v1/") {
		router = s.v1
	}
	var problems []string
	route, params, err := router.FindRoute(r)
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s %s: not an operation of the specification: %v", r.Method, r.URL.Path, err))
	}
	var input *openapi3filter.RequestValidationInput
	if route != nil {
		input = &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: options}
		if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
			problems = append(problems, fmt.Sprintf("%s request: %v", route.Operation.OperationID, err))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}

	rec := &capture{ResponseRecorder: httptest.NewRecorder(), w: w}
	handler.ServeHTTP(rec, r)
	if rec.hijacked { // a dropped connection (fault injection): no answer to check
		return problems
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())

	if input != nil {
		err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input,
			Status:                 rec.Code,
			Header:                 rec.Header(),
			Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
			Options:                options,
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s response %d: %v", route.Operation.OperationID, rec.Code, err))
		} else if len(problems) == 0 {
			validated.Store(route.Operation.OperationID, true)
		}
	}
	return problems
}

// capture buffers the emulator's answer so that it can be checked before
// it is sent, and hands over the connection when the emulator drops it on
// purpose.
type capture struct {
	*httptest.ResponseRecorder
	w        http.ResponseWriter
	hijacked bool
}

func (c *capture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.hijacked = true
	return http.NewResponseController(c.w).Hijack()
}
