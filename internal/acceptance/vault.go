package acceptance

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

const pluginName = "vault-plugin-secrets-datadog"

// vaultServer is the Vault dev server the suite runs: the same binary make
// test uses (scripts/vault-bin.sh), with the plugin registered by checksum
// and version as an operator would.
type vaultServer struct {
	bin     string
	dir     string
	addr    string
	token   string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startVault copies the plugin into its own plugin directory under dir,
// starts a dev server on a free loopback port and registers the plugin.
func startVault(ctx context.Context, bin, plugin, version, dir string) (*vaultServer, error) {
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(plugin, filepath.Join(pluginDir, pluginName), 0o755); err != nil {
		return nil, fmt.Errorf("copying the plugin: %w", err)
	}
	port, err := hostutil.FreePortPair()
	if err != nil {
		return nil, err
	}
	v := &vaultServer{bin: bin, dir: dir, addr: fmt.Sprintf("http://127.0.0.1:%d", port), token: hostutil.RandomHex(16),
		logPath: filepath.Join(dir, "vault.log"), exited: make(chan struct{})}
	logFile, err := os.OpenFile(v.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id="+v.token,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-plugin-dir="+pluginDir, "-log-level=info")
	// A dev server writes its token helper file into HOME; the caller's
	// VAULT_* settings must not reach it, nor the Datadog keys of DD_*:
	// the engine gets its keys from config alone.
	cmd.Env = append(envWithout("VAULT_", "DD_"), "HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	v.cmd = cmd
	go func() {
		cmd.Wait()
		close(v.exited)
	}()
	client, err := v.client()
	if err != nil {
		return v, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		h, err := client.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed {
			break
		}
		select {
		case <-v.exited:
			return v, fmt.Errorf("vault exited before it was ready (see %s)", v.logPath)
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("vault at %s not ready after 2m: %v (see %s)", v.addr, err, v.logPath)
		}
	}
	sum, err := hostutil.FileSHA256(filepath.Join(pluginDir, pluginName))
	if err != nil {
		return v, err
	}
	err = client.Sys().RegisterPluginWithContext(ctx, &api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: pluginName, SHA256: sum, Version: version,
	})
	if err != nil {
		return v, fmt.Errorf("registering the plugin (version %s; it must be the version the binary was built with): %w", version, err)
	}
	return v, nil
}

// client is a root client that never retries: a retry would hide a
// failure and send a creds request twice.
func (v *vaultServer) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	cfg.Timeout = 3 * time.Minute
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(v.token)
	return c, nil
}

// stop ends the server gracefully (it stops its plugin processes), killing
// it if it takes too long.
func (v *vaultServer) stop() {
	if v == nil || v.cmd == nil {
		return
	}
	select {
	case <-v.exited:
		return
	default:
	}
	v.cmd.Process.Signal(os.Interrupt)
	select {
	case <-v.exited:
	case <-time.After(15 * time.Second):
		v.cmd.Process.Kill()
		<-v.exited
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// envWithout is the environment without the variables of some prefixes.
func envWithout(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return env
}
