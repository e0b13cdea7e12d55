package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// benchScopes are the scopes of every role and of every direct create.
var benchScopes = []string{"dashboards_read", "monitors_read"}

// datadogServer is the emulator, served on loopback in this process.
type datadogServer struct {
	*emulator.Emulator
	URL      string
	srv      *http.Server
	tooMany  atomic.Int64 // 429 answers, rate limits being the only source here
	requests atomic.Int64 // Datadog API calls answered
}

// startDatadog serves a fresh emulator on a loopback port. With latency > 0
// every Datadog API call waits that long before it is served, as a round
// trip to Datadog would.
//
// Each of up to maxClients clients holds an API key at a time, which
// Datadog's default cap of 50 per organisation would refuse at 64 clients:
// the organisation's cap is raised, as Datadog support does (the recorded
// organisation has 200), since the benchmark measures throughput, not the
// cap.
func startDatadog(latency time.Duration, maxClients int) (*datadogServer, error) {
	emu, err := emulator.Open(emulator.Options{MaxAPIKeys: max(200, 2*maxClients)})
	if err != nil {
		return nil, err
	}
	if latency > 0 {
		if _, err := emu.AddFault(emulator.Fault{Operation: "*", Action: emulator.FaultLatency, Latency: latency}); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &datadogServer{Emulator: emu, URL: "http://" + ln.Addr().String()}
	d.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &emulator.StatusRecorder{ResponseWriter: w}
		emu.ServeHTTP(rec, r)
		if !strings.HasPrefix(r.URL.Path, "/_emulator/") {
			d.requests.Add(1)
			if rec.Status == http.StatusTooManyRequests {
				d.tooMany.Add(1)
			}
		}
	})}
	go d.srv.Serve(ln)
	return d, nil
}

func (d *datadogServer) close() { d.srv.Close() }

// engineKeys counts the live credentials the engine made: their names
// start with "vault-".
func (d *datadogServer) engineKeys() int {
	n := 0
	for _, k := range d.Keys() {
		if strings.HasPrefix(k.Name, "vault-") {
			n++
		}
	}
	return n
}

// newServiceAccount creates an enabled service account with the Datadog
// Admin Role, as an administrator would, and returns its id.
func (d *datadogServer) newServiceAccount(name string) (string, error) {
	var roles struct {
		Data []struct {
			ID         string `json:"id"`
			Attributes struct {
				Name string `json:"name"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := d.call(http.MethodGet, "/api/v2/roles", nil, &roles); err != nil {
		return "", err
	}
	var roleID string
	for _, r := range roles.Data {
		if r.Attributes.Name == "Datadog Admin Role" {
			roleID = r.ID
		}
	}
	body := map[string]any{"data": map[string]any{
		"type":          "users",
		"attributes":    map[string]any{"email": name + "@example.com", "name": name, "service_account": true},
		"relationships": map[string]any{"roles": map[string]any{"data": []any{map[string]any{"type": "roles", "id": roleID}}}},
	}}
	var sa struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := d.call(http.MethodPost, "/api/v2/service_accounts", body, &sa); err != nil {
		return "", err
	}
	return sa.Data.ID, nil
}

// call sends a request to the emulated API with the seeded keys.
func (d *datadogServer) call(method, path string, body, out any) error {
	var buf bytes.Buffer
	if body != nil {
		json.NewEncoder(&buf).Encode(body)
	}
	req, err := http.NewRequest(method, d.URL+path, &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DD-API-KEY", d.APIKey())
	req.Header.Set("DD-APPLICATION-KEY", d.AppKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// direct makes the engine's Datadog calls straight from the benchmark,
// with datadog-api-client-go configured as the engine configures it (no
// client-go retries, a pooled HTTP client): the upstream floor. Each
// benchmark client has its own, hence its own keep-alive connections.
type direct struct {
	ctx  context.Context // carries the keys, as client-go wants them
	keys *datadogV2.KeyManagementApi
	sas  *datadogV2.ServiceAccountsApi
	seq  atomic.Int64
}

func newDirect(d *datadogServer) (*direct, error) {
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, err
	}
	cfg := datadog.NewConfiguration()
	cfg.RetryConfiguration.EnableRetry = false
	cfg.HTTPClient = cleanhttp.DefaultPooledClient()
	cfg.Host, cfg.Scheme = u.Host, u.Scheme
	client := datadog.NewAPIClient(cfg)
	ctx := context.WithValue(context.Background(), datadog.ContextAPIKeys, map[string]datadog.APIKey{
		"apiKeyAuth": {Key: d.APIKey()},
		"appKeyAuth": {Key: d.AppKey()},
	})
	ctx = context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": "datadoghq.com"})
	return &direct{ctx: ctx, keys: datadogV2.NewKeyManagementApi(client), sas: datadogV2.NewServiceAccountsApi(client)}, nil
}

// name is a unique name outside the engine's "vault-" namespace.
func (c *direct) name() string {
	return fmt.Sprintf("bench-direct-%p-%d", c, c.seq.Add(1))
}

func (c *direct) createAppKey() (string, error) {
	attrs := datadogV2.NewApplicationKeyCreateAttributes(c.name())
	attrs.SetScopes(benchScopes)
	body := datadogV2.NewApplicationKeyCreateRequest(*datadogV2.NewApplicationKeyCreateData(*attrs, datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS))
	out, _, err := c.keys.CreateCurrentUserApplicationKey(c.ctx, *body)
	return created(out.GetData().Id, err)
}

func (c *direct) deleteAppKey(id string) error {
	_, err := c.keys.DeleteCurrentUserApplicationKey(c.ctx, id)
	return err
}

func (c *direct) createAPIKey() (string, error) {
	body := datadogV2.NewAPIKeyCreateRequest(*datadogV2.NewAPIKeyCreateData(*datadogV2.NewAPIKeyCreateAttributes(c.name()), datadogV2.APIKEYSTYPE_API_KEYS))
	out, _, err := c.keys.CreateAPIKey(c.ctx, *body)
	return created(out.GetData().Id, err)
}

func (c *direct) deleteAPIKey(id string) error {
	_, err := c.keys.DeleteAPIKey(c.ctx, id)
	return err
}

// createServiceAccessToken makes a token expiring as the engine's would
// for a lease of up to an hour.
func (c *direct) createServiceAccessToken(sa string) (string, error) {
	attrs := datadogV2.NewServiceAccountAccessTokenCreateAttributes(c.name(), benchScopes)
	attrs.SetExpiresAt(time.Now().Add(70 * time.Minute).UTC().Truncate(time.Second))
	body := datadogV2.NewServiceAccountAccessTokenCreateRequest(*datadogV2.NewServiceAccountAccessTokenCreateData(*attrs, datadogV2.SERVICEACCESSTOKENSTYPE_SERVICE_ACCESS_TOKENS))
	out, _, err := c.sas.CreateServiceAccountAccessToken(c.ctx, sa, *body)
	return created(out.GetData().Id, err)
}

func (c *direct) revokeServiceAccessToken(sa, id string) error {
	_, err := c.sas.RevokeServiceAccountAccessToken(c.ctx, sa, id)
	return err
}

func created(id *string, err error) (string, error) {
	if err != nil {
		return "", err
	}
	if id == nil || *id == "" {
		return "", errors.New("Datadog's answer had no id")
	}
	return *id, nil
}
