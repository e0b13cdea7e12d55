package acceptance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// The environment a user sets. Without DD_API_KEY and DD_APP_KEY the suite
// runs against its own emulator.
const (
	EnvAPIKey         = "DD_API_KEY"
	EnvAppKey         = "DD_APP_KEY"
	EnvSite           = "DD_SITE"
	EnvAPIURL         = "DD_API_URL"            // optional: the API's base URL instead of https://api.<site> (a proxy; an emulator)
	EnvServiceAccount = "DD_SERVICE_ACCOUNT_ID" // optional: a service account for the service-account and token-root scenarios
	EnvAccessToken    = "DD_ACCESS_TOKEN"       // optional: a service access token of that service account, for the token-root scenarios
	EnvRecord         = "DD_RECORD"             // optional: a directory to write the run's Datadog traffic to
)

// sites are those the engine accepts (README, Configuration).
var sites = []string{"datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "ap1.datadoghq.com", "ap2.datadoghq.com",
	"uk1.datadoghq.com", "datadoghq.eu", "ddog-gov.com", "us2.ddog-gov.com"}

// target is the Datadog the run talks to, and what the user gave it.
type target struct {
	mode   string // "emulator" or "real"
	site   string
	apiURL *url.URL // where the proxy forwards: https://api.<site>, DD_API_URL, or the emulator
	urlSet bool     // DD_API_URL replaced https://api.<site>
	given  given

	emu       *emulator.Emulator // emulator mode only
	emuServer *http.Server
}

// given is what the user hands the suite (or, against the emulator, what
// the suite makes itself as the user would).
type given struct {
	APIKey, AppKey   string
	ServiceAccountID string
	AccessToken      string
}

func (g given) keys() creds { return creds{APIKey: g.APIKey, AppKey: g.AppKey} }

// targetFromEnv reads the environment. With none of the keys set it
// starts an emulator on loopback.
func targetFromEnv(getenv func(string) string) (*target, error) {
	apiKey, appKey, site := getenv(EnvAPIKey), getenv(EnvAppKey), getenv(EnvSite)
	if apiKey == "" && appKey == "" {
		if getenv(EnvAPIURL) != "" {
			return nil, fmt.Errorf("%s is set without %s and %s: set all three (and %s), or none to run against the suite's own emulator", EnvAPIURL, EnvAPIKey, EnvAppKey, EnvSite)
		}
		return startEmulatorTarget()
	}
	var missing []string
	for name, v := range map[string]string{EnvAPIKey: apiKey, EnvAppKey: appKey, EnvSite: site} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("set %s as well, or none of %s, %s and %s to run against the suite's own emulator",
			strings.Join(missing, " and "), EnvAPIKey, EnvAppKey, EnvSite)
	}
	known := false
	for _, s := range sites {
		known = known || s == site
	}
	if !known {
		return nil, fmt.Errorf("%s=%s is not a Datadog site the engine knows (%s)", EnvSite, site, strings.Join(sites, ", "))
	}
	t := &target{mode: "real", site: site, given: given{APIKey: apiKey, AppKey: appKey,
		ServiceAccountID: getenv(EnvServiceAccount), AccessToken: getenv(EnvAccessToken)}}
	raw := "https://api." + site
	if u := getenv(EnvAPIURL); u != "" {
		raw, t.urlSet = strings.TrimRight(u, "/"), true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%s=%q is not a base URL such as https://api.datadoghq.com or http://127.0.0.1:8126", EnvAPIURL, raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%s=%q: http:// only for loopback hosts; Datadog's keys travel in it", EnvAPIURL, raw)
	}
	if t.given.AccessToken != "" && t.given.ServiceAccountID == "" {
		return nil, fmt.Errorf("%s is set without %s, the service account the token belongs to", EnvAccessToken, EnvServiceAccount)
	}
	t.apiURL = u
	return t, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startEmulatorTarget serves a fresh emulator on loopback: its seeded keys
// are the user's. The service account and its token are made later,
// through the API, as a user would.
func startEmulatorTarget() (*target, error) {
	emu, err := emulator.Open(emulator.Options{})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	u, _ := url.Parse("http://" + ln.Addr().String())
	return &target{mode: "emulator", site: "datadoghq.com", apiURL: u, emu: emu, emuServer: srv,
		given: given{APIKey: emu.APIKey(), AppKey: emu.AppKey()}}, nil
}

func (t *target) close() {
	if t.emuServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.emuServer.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.emuServer.Close()
		}
	}
}

// describe says what the run talks to, without a secret.
func (t *target) describe() string {
	if t.mode == "emulator" {
		return "the suite's own Datadog emulator at " + t.apiURL.String()
	}
	if t.urlSet {
		return fmt.Sprintf("the Datadog organisation of %s (site %s) at %s (%s)", EnvAPIKey, t.site, t.apiURL, EnvAPIURL)
	}
	return fmt.Sprintf("the Datadog organisation of %s at %s", EnvAPIKey, t.apiURL)
}
