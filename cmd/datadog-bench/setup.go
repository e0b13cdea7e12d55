package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// The plugins, as built into the plugin directory, and their mounts.
const (
	enginePlugin = "vault-plugin-secrets-datadog"
	floorPlugin  = "datadog-bench-floor"
	floorVersion = "v1.0.0"

	engineMount = "datadog"
	floorMount  = "floor"
	kvMount     = "kv"
)

// smallSecret is what the kv-v2 floor reads and writes.
var smallSecret = map[string]any{"username": "bench", "password": strings.Repeat("p", 40)}

// env is one server set up for the benchmark.
type env struct {
	opts      *options
	s         *server
	dd        *datadogServer
	admin     *api.Client
	workers   []*worker
	pluginPID int // the engine's plugin process

	tokenSA  string // owns the service access tokens
	expirySA string // owns the mass expiry's application keys, and nothing else
}

// setup registers and mounts both plugins and a kv-v2 engine, configures
// the engine for the emulator with its roles, and makes the workers.
func (e *env) setup() error {
	var err error
	if e.admin, err = e.s.client(); err != nil {
		return err
	}
	if err := registerPlugin(e.admin, e.opts.pluginDir, enginePlugin, e.opts.pluginVersion, e.opts.pluginEnv); err != nil {
		return fmt.Errorf("registering %s: %w", enginePlugin, err)
	}
	if err := registerPlugin(e.admin, e.opts.pluginDir, floorPlugin, floorVersion, nil); err != nil {
		return fmt.Errorf("registering %s: %w", floorPlugin, err)
	}
	mounts := []struct {
		path string
		in   api.MountInput
	}{
		{engineMount, api.MountInput{Type: enginePlugin, Config: api.MountConfigInput{PluginVersion: e.opts.pluginVersion}}},
		{floorMount, api.MountInput{Type: floorPlugin, Config: api.MountConfigInput{PluginVersion: floorVersion}}},
		{kvMount, api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}},
	}
	for _, m := range mounts {
		if err := e.admin.Sys().Mount(m.path, &m.in); err != nil {
			return fmt.Errorf("mounting %s: %w", m.path, err)
		}
	}

	if e.tokenSA, err = e.dd.newServiceAccount("bench-tokens"); err != nil {
		return err
	}
	if e.expirySA, err = e.dd.newServiceAccount("bench-expiry"); err != nil {
		return err
	}
	scopes := strings.Join(benchScopes, ",")
	writes := []struct {
		path string
		data map[string]any
	}{
		{engineMount + "/config", map[string]any{"api_key": e.dd.APIKey(), "app_key": e.dd.AppKey(), "api_url": e.dd.URL}},
		{floorMount + "/safe/config", map[string]any{"api_key": e.dd.APIKey(), "app_key": e.dd.AppKey(), "api_url": e.dd.URL}},
		{engineMount + "/roles/none", map[string]any{"scopes": scopes, "api_key_mode": "none", "ttl": "1h"}},
		{engineMount + "/roles/dynamic", map[string]any{"scopes": scopes, "api_key_mode": "dynamic", "ttl": "1h"}},
		{engineMount + "/roles/shared", map[string]any{"scopes": scopes, "api_key_mode": "shared", "ttl": "1h"}},
		{engineMount + "/roles/token", map[string]any{"credential_type": "service_access_token", "service_account_id": e.tokenSA, "scopes": scopes, "ttl": "1h"}},
		{engineMount + "/roles/expiry", map[string]any{"credential_type": "service_account_application_key", "service_account_id": e.expirySA,
			"scopes": scopes, "ttl": int(e.opts.leaseTTL.Seconds())}}, // the default api_key_mode: shared
	}
	for _, w := range writes {
		if _, err := e.admin.Logical().Write(w.path, w.data); err != nil {
			return fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	// A new kv-v2 mount upgrades its storage first, refusing writes until
	// it is done.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := e.admin.Logical().Write(kvMount+"/data/bench", map[string]any{"data": smallSecret})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("writing the kv-v2 secret: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for range slices.Max(e.opts.clients) {
		client, err := e.s.client()
		if err != nil {
			return err
		}
		direct, err := newDirect(e.dd)
		if err != nil {
			return err
		}
		e.workers = append(e.workers, &worker{id: len(e.workers), vault: client, direct: direct})
	}
	// Vault starts the plugin process on the mount's first request (the
	// config write above); it serves every later one.
	e.pluginPID, err = childRunning(e.s.cmd.Process.Pid, filepath.Join(e.opts.pluginDir, enginePlugin))
	if err == nil && e.pluginPID == 0 {
		err = errors.New("Vault runs no process of the engine")
	}
	if err != nil {
		return fmt.Errorf("finding the plugin process: %w", err)
	}
	return nil
}

// ops are the operations measured at every concurrency, in the order of
// the tables.
func (e *env) ops() []*benchOp {
	creds := func(path string) cycle {
		return func(w *worker) (timing, error) {
			var secret *api.Secret
			read, err := timed(func() (err error) {
				secret, err = w.vault.Logical().Read(path)
				return err
			})
			if err != nil {
				return timing{}, err
			}
			if secret == nil || secret.LeaseID == "" {
				return timing{}, fmt.Errorf("reading %s returned no lease", path)
			}
			revoke, err := timed(func() error { return w.vault.Sys().Revoke(secret.LeaseID) })
			if err != nil {
				return timing{}, fmt.Errorf("revoking a lease of %s: %w", path, err)
			}
			return timing{read, revoke}, nil
		}
	}
	return []*benchOp{
		{id: "creds-none", label: "creds: app key (api_key_mode none)", cleanup: "revoke", upstream: "dd-app", run: creds(engineMount + "/creds/none")},
		{id: "creds-dynamic", label: "creds: app key + API key (dynamic)", cleanup: "revoke", upstream: "dd-app-api", run: creds(engineMount + "/creds/dynamic")},
		{id: "creds-shared", label: "creds: app key + shared API key (shared)", cleanup: "revoke", upstream: "dd-app", run: creds(engineMount + "/creds/shared")},
		{id: "creds-token", label: "creds: service access token", cleanup: "revoke", upstream: "dd-token", run: creds(engineMount + "/creds/token")},
		{id: "floor", label: "leased-secret floor: read", cleanup: "revoke", run: creds(floorMount + "/creds/bench")},
		{id: "floor-safe", label: "crash-safe floor: record, create, record", cleanup: "revoke", run: creds(floorMount + "/safe/creds/bench")},
		{id: "kv-read", label: "kv-v2 read", run: func(w *worker) (timing, error) {
			d, err := timed(func() error {
				secret, err := w.vault.Logical().Read(kvMount + "/data/bench")
				if err == nil && secret == nil {
					err = errors.New("the kv-v2 secret is missing")
				}
				return err
			})
			return timing{op: d}, err
		}},
		{id: "kv-write", label: "kv-v2 write", run: func(w *worker) (timing, error) {
			d, err := timed(func() error {
				_, err := w.vault.Logical().Write(kvMount+"/data/bench-"+strconv.Itoa(w.id), map[string]any{"data": smallSecret})
				return err
			})
			return timing{op: d}, err
		}},
		{id: "dd-app", label: "Datadog: app key create", cleanup: "delete", run: func(w *worker) (timing, error) {
			var id string
			create, err := timed(func() (err error) { id, err = w.direct.createAppKey(); return err })
			if err != nil {
				return timing{}, err
			}
			del, err := timed(func() error { return w.direct.deleteAppKey(id) })
			return timing{create, del}, err
		}},
		{id: "dd-app-api", label: "Datadog: app key + API key create", cleanup: "delete", run: func(w *worker) (timing, error) {
			var app, key string
			create, err := timed(func() (err error) {
				if app, err = w.direct.createAppKey(); err != nil {
					return err
				}
				key, err = w.direct.createAPIKey()
				return err
			})
			if err != nil {
				return timing{}, err
			}
			del, err := timed(func() error { return errors.Join(w.direct.deleteAppKey(app), w.direct.deleteAPIKey(key)) })
			return timing{create, del}, err
		}},
		{id: "dd-token", label: "Datadog: service access token create", cleanup: "revoke", run: func(w *worker) (timing, error) {
			var id string
			create, err := timed(func() (err error) { id, err = w.direct.createServiceAccessToken(e.tokenSA); return err })
			if err != nil {
				return timing{}, err
			}
			del, err := timed(func() error { return w.direct.revokeServiceAccessToken(e.tokenSA, id) })
			return timing{create, del}, err
		}},
	}
}

// memory is the resident set size of the engine's plugin process and of
// Vault, in bytes, at one moment (or the peak of a period).
type memory struct {
	plugin, vault int64
	clients       int // for a peak: under how many clients
}

func (e *env) memory() (memory, error) {
	plugin, err := rss(e.pluginPID)
	if err != nil {
		return memory{}, fmt.Errorf("reading the plugin's memory: %w", err)
	}
	vault, err := rss(e.s.cmd.Process.Pid)
	if err != nil {
		return memory{}, fmt.Errorf("reading Vault's memory: %w", err)
	}
	return memory{plugin: plugin, vault: vault}, nil
}

// vaultProfile fetches Vault's CPU profile over the next cell (Vault
// serves pprof at sys/pprof to root) into path.
func (e *env) vaultProfile(path string) chan error {
	done := make(chan error, 1)
	seconds := max(1, int(math.Round(e.opts.duration.Seconds())))
	go func() {
		resp, err := e.admin.Logical().ReadRawWithData("sys/pprof/profile", map[string][]string{"seconds": {strconv.Itoa(seconds)}})
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			done <- err
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
		progress("Vault's CPU profile under 16 clients of creds reads: %s", path)
	}()
	return done
}
