package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

// server is one Vault server the benchmark runs, with its own directory
// (configuration, data, log, HOME).
type server struct {
	kind   string // "dev" or "raft"
	bin    string
	dir    string
	addr   string // http://127.0.0.1:PORT
	token  string // root token
	cmd    *exec.Cmd
	exited chan struct{}
}

// devConfig is merged into the dev server's own configuration: sys/raw,
// where the benchmark reads storage entries to size them.
const devConfig = `raw_storage_endpoint = true
`

// raftConfig is a single node with integrated storage, started from a
// configuration file as in production; performance_multiplier 1 gives raft
// its production timings.
const raftConfig = `storage "raft" {
  path                   = %q
  node_id                = "bench"
  performance_multiplier = 1
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr             = "http://127.0.0.1:%d"
cluster_addr         = "https://127.0.0.1:%d"
plugin_directory     = %q
disable_mlock        = true
raw_storage_endpoint = true
`

// startServer starts a Vault server of the kind ("dev" or "raft") in dir,
// with pluginDir as its plugin directory, and returns it initialised,
// unsealed and active.
func startServer(kind, bin, dir, pluginDir string) (*server, error) {
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o700); err != nil {
		return nil, err
	}
	port, err := hostutil.FreePortPair()
	if err != nil {
		return nil, err
	}
	s := &server{kind: kind, bin: bin, dir: dir, addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	configPath := filepath.Join(dir, "vault.hcl")
	var args []string
	switch kind {
	case "dev":
		s.token = hostutil.RandomHex(16)
		if err := os.WriteFile(configPath, []byte(devConfig), 0o600); err != nil {
			return nil, err
		}
		args = []string{"server", "-dev", "-dev-root-token-id=" + s.token,
			fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-plugin-dir=" + pluginDir, "-config=" + configPath}
	case "raft":
		dataDir := filepath.Join(dir, "data")
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		config := fmt.Sprintf(raftConfig, dataDir, port, port+1, port, port+1, pluginDir)
		if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
			return nil, err
		}
		args = []string{"server", "-config=" + configPath}
	default:
		return nil, fmt.Errorf("unknown server kind %q (want dev or raft)", kind)
	}
	// Info is Vault's default level: what an operator would run with.
	if err := s.launch(append(args, "-log-level=info")...); err != nil {
		return nil, err
	}
	if kind == "raft" {
		if err := s.waitHealth(time.Minute, func(*api.HealthResponse) bool { return true }); err != nil {
			return s, err
		}
		if err := s.initialize(); err != nil {
			return s, err
		}
	}
	return s, s.waitHealth(2*time.Minute, func(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed && !h.Standby })
}

func (s *server) logPath() string { return filepath.Join(s.dir, "vault.log") }

// launch starts the server process, its output going to its log.
func (s *server) launch(args ...string) error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, args...)
	// The caller's VAULT_* settings must not reach this server; a dev
	// server writes its token helper file into HOME.
	cmd.Env = append(cleanEnv(), "HOME="+filepath.Join(s.dir, "home"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	stopWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// initialize initialises a new raft server with one unseal key and
// unseals it.
func (s *server) initialize() error {
	client, err := s.client()
	if err != nil {
		return err
	}
	init, err := client.Sys().Init(&api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return fmt.Errorf("vault operator init: %w", err)
	}
	s.token = init.RootToken
	if _, err := client.Sys().Unseal(init.KeysB64[0]); err != nil {
		return fmt.Errorf("vault operator unseal: %w", err)
	}
	return nil
}

// waitHealth waits until the server's sys/health answer satisfies ok.
func (s *server) waitHealth(timeout time.Duration, ok func(*api.HealthResponse) bool) error {
	client, err := s.client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		health, err := client.Sys().Health()
		if err == nil && ok(health) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the %s server exited (see %s)", s.kind, s.logPath())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %s server at %s is not ready after %s: %v (see %s)", s.kind, s.addr, timeout, err, s.logPath())
		}
	}
}

// stop ends the server gracefully, so that it stops its plugin processes
// too, and kills it if it takes too long.
func (s *server) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// client is a root client of the server with a connection pool of its own.
// It never retries: a retry would hide a failure and count one operation
// twice.
func (s *server) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.SetToken(s.token)
	return client, nil
}

// registerPlugin registers a secrets plugin of pluginDir in the catalog, as
// an operator would: by checksum and version.
func registerPlugin(client *api.Client, pluginDir, name, version string, env []string) error {
	sum, err := hostutil.FileSHA256(filepath.Join(pluginDir, name))
	if err != nil {
		return err
	}
	return client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: name, Type: api.PluginTypeSecrets, Command: name, SHA256: sum, Version: version, Env: env,
	})
}

// cleanEnv is the environment without VAULT_* settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}
