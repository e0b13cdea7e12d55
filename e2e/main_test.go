package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

const (
	pluginName    = "vault-plugin-secrets-datadog"
	pluginVersion = "v0.1.0-e2e"
	versionVar    = "github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/backend.Version"
)

// vault is the server every test talks to, started by TestMain.
var vault *vaultServer

// The suite's files: workDir holds every Vault's log and audit files and
// the plugin, built once into pluginDir with checksum pluginSHA256.
var workDir, pluginDir, pluginSHA256 string

// auditLogs are the shared server's audit files.
var auditLogs []string

type vaultServer struct {
	bin     string // the vault binary, also used as the CLI
	addr    string // http://127.0.0.1:PORT
	token   string // root token
	logPath string // the server's output, appended to across restarts
	home    string // the server's HOME, under workDir
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "datadog-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	vault, err = startVault(workDir)
	if vault != nil {
		defer vault.stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setting up Vault:", err)
		printLogTail(filepath.Join(workDir, "vault.log"))
		return 1
	}
	if auditLogs, err = enableAuditDevices(vault, workDir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: enabling audit devices:", err)
		return 1
	}

	code := m.Run()
	if code != 0 {
		printLogTail(vault.logPath)
	}
	// Logs and audit files are complete once Vault has stopped.
	vault.stop()
	summary, err := checkNoSecretInLogs(wholeSuiteRan())
	fmt.Fprintln(os.Stderr, "e2e: no secret in logs:", summary)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: the suite's logs and audit files are kept in %s\n", workDir)
		return code
	}
	os.RemoveAll(workDir)
	return code
}

// wholeSuiteRan says whether go test ran every test (no -run, -skip or
// -list): only then must the leak check have had plenty to look for.
func wholeSuiteRan() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

// startVault builds the plugin, starts a Vault dev server with it in its
// plugin directory, and registers it with its checksum and version.
func startVault(workDir string) (*vaultServer, error) {
	bin, err := findVault()
	if err != nil {
		return nil, err
	}
	pluginDir = filepath.Join(workDir, "plugins")
	sum, err := buildPlugin(pluginDir)
	if err != nil {
		return nil, err
	}
	pluginSHA256 = sum
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	token := hostutil.RandomHex(16)
	v := &vaultServer{
		bin:     bin,
		addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
		token:   token,
		logPath: filepath.Join(workDir, "vault.log"),
		// A dev server saves its root token in $HOME/.vault-token: keep it
		// out of the user's home.
		home: workDir,
	}
	// At trace level Vault's log holds everything the plugin process logs
	// too, so that the leak check sees it all.
	if err := v.launch("server", "-dev", "-log-level=trace",
		"-dev-root-token-id="+token,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+pluginDir); err != nil {
		return nil, err
	}

	if err := v.waitHealthy(60 * time.Second); err != nil {
		return v, err
	}
	out, err := v.cli("plugin", "register", "-sha256="+sum, "-version="+pluginVersion, "secret", pluginName)
	if err != nil {
		return v, fmt.Errorf("registering the plugin: %w\n%s", err, out)
	}
	return v, nil
}

// enableAuditDevices has the server audit every request into files under
// dir: one device with Vault's defaults, one with hmac_accessor=false, each a
// place where a secret could leak. It returns the files.
func enableAuditDevices(v *vaultServer, dir string) ([]string, error) {
	client, err := v.client()
	if err != nil {
		return nil, err
	}
	var files []string
	for _, device := range []struct {
		path    string
		options map[string]string
	}{
		{"audit-default", map[string]string{}},
		{"audit-accessor", map[string]string{"hmac_accessor": "false"}},
	} {
		file := filepath.Join(dir, device.path+".log")
		device.options["file_path"] = file
		if err := client.Sys().EnableAuditWithOptions(device.path, &api.EnableAuditOptions{Type: "file", Options: device.options}); err != nil {
			return nil, fmt.Errorf("enabling the file audit device %s: %w", device.path, err)
		}
		files = append(files, file)
	}
	return files, nil
}

// findVault returns $VAULT_BIN, or the binary that scripts/vault-bin.sh
// finds or builds (its progress goes to stderr).
func findVault() (string, error) {
	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		return bin, nil
	}
	cmd := exec.Command(filepath.Join("..", "scripts", "vault-bin.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("no Vault binary: VAULT_BIN is unset and ../scripts/vault-bin.sh failed: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildPlugin builds the plugin into dir with the test version and returns
// its SHA-256, as `vault plugin register` wants it.
func buildPlugin(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, pluginName)
	cmd := exec.Command("go", "build", "-ldflags", "-X "+versionVar+"="+pluginVersion,
		"-o", path, "../cmd/vault-plugin-secrets-datadog")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the plugin: %w\n%s", err, out)
	}
	return hostutil.FileSHA256(path)
}

// freePort asks the kernel for a loopback port that is free right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the vault binary with args as this server's process, its
// output appended to logPath, and returns once the process runs.
func (v *vaultServer) launch(args ...string) error {
	logFile, err := os.OpenFile(v.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(v.bin, args...)
	cmd.Env = append(vaultEnv("", ""), "HOME="+v.home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	stopWithTestProcess(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", v.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	v.cmd, v.exited = cmd, exited
	return nil
}

// waitHealthy waits until the server is initialised and unsealed (active
// or standby).
func (v *vaultServer) waitHealthy(timeout time.Duration) error {
	return v.waitHealth(timeout, "healthy", func(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed })
}

// waitHealth waits until the server's sys/health answer satisfies ok.
func (v *vaultServer) waitHealth(timeout time.Duration, what string, ok func(*api.HealthResponse) bool) error {
	client, err := v.client()
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
		case <-v.exited:
			return fmt.Errorf("vault server exited before becoming %s (see its log %s)", what, v.logPath)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault server at %s not %s after %s: %v", v.addr, what, timeout, err)
		}
	}
}

// stop ends the server gracefully (so that it stops its plugin processes
// too), killing it if it takes too long. Calling it again does nothing.
func (v *vaultServer) stop() {
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

func (v *vaultServer) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.SetToken(v.token)
	return client, nil
}

// cli runs the vault CLI against the server, as a user with the root token
// would, and returns its combined output.
func (v *vaultServer) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.bin, args...)
	cmd.Env = vaultEnv(v.addr, v.token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		// What the CLI printed, not its arguments: they may hold a key.
		noteError(fmt.Errorf("%w: %s", err, out.String()))
	}
	return out.String(), err
}

// vaultEnv is the test's environment without the caller's VAULT_* settings,
// which could point the CLI at another server, plus addr and token if given.
func vaultEnv(addr, token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	if addr != "" {
		env = append(env, "VAULT_ADDR="+addr, "VAULT_TOKEN="+token)
	}
	return env
}

// printLogTail shows the end of Vault's log, where plugin errors land.
func printLogTail(path string) {
	const lines = 60
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "e2e: reading Vault's log:", err)
		}
		return
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	fmt.Fprintf(os.Stderr, "--- last %d lines of %s ---\n%s\n---\n", len(all), path, strings.Join(all, "\n"))
}
