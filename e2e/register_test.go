package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

// installConfig is the configuration of a server that the plugin is
// installed in as in production: not in dev mode, with a plugin_directory
// of its own, which starts empty. In-memory storage: the test needs no
// restart.
const installConfig = `storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}

api_addr         = "http://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
`

// installServer is a Vault server of one test, run from installConfig.
type installServer struct {
	*raftNode        // start, initialize and unseal serve any server run from a config file
	pluginDir string // its plugin_directory
	buildDir  string // where make builds the plugin for it
}

// TestRegisterAndUpgrade installs the plugin as the README tells an operator
// to: make register puts v0.1.0 in the server's plugin directory and catalog,
// the engine is enabled and issues a credential, then make upgrade moves the
// mount to v0.2.0. The mount must then run the v0.2.0 build, the lease
// issued by v0.1.0 must still renew and revoke, and v0.2.0 must issue and
// revoke credentials too.
func TestRegisterAndUpgrade(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	srv := startInstallServer(t)
	client := srv.rootClient(t)

	out := srv.runMake(t, "register", "VERSION=v0.1.0")
	for _, want := range []string{
		"copied ",
		"registered secret plugin " + pluginName + " v0.1.0",
		"command " + pluginName + "-v0.1.0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make register printed no %q:\n%s", want, out)
		}
	}
	v1 := srv.requireCatalogued(t, client, "v0.1.0")

	// As the README enables it: no version given, the only one registered.
	srv.mustCLI(t, "secrets", "enable", "-path=datadog", pluginName)
	disableAtCleanup(t, client, "datadog", dd)
	requireMountRuns(t, client, "datadog", "v0.1.0", v1)
	configure(t, client, "datadog", dd)
	write(t, client, "datadog/roles/reader", map[string]any{"scopes": "dashboards_read", "ttl": "1h"})
	before := readCreds(t, client, "datadog/creds/reader")
	requireKeysWork(t, dd, before.Data, http.StatusOK)

	out = srv.runMake(t, "upgrade", "VERSION=v0.2.0", "MOUNT=datadog")
	for _, want := range []string{
		"mount datadog/ runs " + pluginName + " v0.1.0\n",
		"registered secret plugin " + pluginName + " v0.2.0",
		"mount datadog/ runs " + pluginName + " v0.2.0 (was v0.1.0)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make upgrade printed no %q:\n%s", want, out)
		}
	}
	v2 := srv.requireCatalogued(t, client, "v0.2.0")
	if v2 == v1 {
		t.Fatalf("v0.1.0 and v0.2.0 have the same sha256 %s: the version is not built into the plugin", v1)
	}
	// The running version is what the plugin process itself reports, and
	// the checksum that of the file Vault started: the new build runs.
	requireMountRuns(t, client, "datadog", "v0.2.0", v2)
	// The old version stays in the catalog and in the directory, for
	// mounts still pinned to it.
	srv.requireCatalogued(t, client, "v0.1.0")

	// The lease v0.1.0 issued is the new version's to renew and revoke.
	if _, err := client.Sys().Renew(before.LeaseID, 3600); err != nil {
		t.Fatalf("renewing the lease issued by v0.1.0 after the upgrade: %v", err)
	}
	requireKeysWork(t, dd, before.Data, http.StatusOK)
	if err := client.Sys().Revoke(before.LeaseID); err != nil {
		t.Fatalf("revoking the lease issued by v0.1.0 after the upgrade: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(before.Data)...)
	requireKeysWork(t, dd, before.Data, http.StatusForbidden)

	after := readCreds(t, client, "datadog/creds/reader")
	dd.requireKeysIssued(t, after.Data, "reader", []string{"dashboards_read"})
	requireKeysWork(t, dd, after.Data, http.StatusOK)
	if err := client.Sys().Revoke(after.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued by v0.2.0: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(after.Data)...)
}

// startInstallServer starts, initialises and unseals a server of its own
// for the test, under workDir, to be stopped when the test ends.
func startInstallServer(t *testing.T) *installServer {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "install-"+mountPath(t)+"-")
	if err != nil {
		t.Fatal(err)
	}
	s := &installServer{pluginDir: filepath.Join(dir, "plugins"), buildDir: filepath.Join(dir, "build")}
	for _, sub := range []string{s.pluginDir, s.buildDir, filepath.Join(dir, "home")} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := findVault()
	if err != nil {
		t.Fatal(err)
	}
	port := requireFreePort(t)
	s.raftNode = &raftNode{
		vaultServer: &vaultServer{
			bin:     bin,
			addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
			logPath: filepath.Join(dir, "vault.log"),
			home:    filepath.Join(dir, "home"),
		},
		name:       "install",
		configPath: filepath.Join(dir, "vault.hcl"),
	}
	if err := os.WriteFile(s.configPath, []byte(fmt.Sprintf(installConfig, port, port, s.pluginDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.running() {
			return
		}
		plugins, _ := childrenRunningFrom(s.cmd.Process.Pid, s.pluginDir)
		s.stop()
		for _, pid := range plugins {
			killIfRunningFrom(pid, s.pluginDir)
		}
		if t.Failed() {
			printLogTail(s.logPath)
		}
	})
	s.start(t)
	_, s.unsealKey = s.initialize(t)
	s.unseal(t)
	return s
}

// mustCLI runs the vault CLI against the server with its root token, as
// an operator would, and fails the test if the command fails.
func (s *installServer) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		t.Fatalf("vault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runMake runs a make target of the repository against the server, as its
// operator would (VAULT_ADDR and VAULT_TOKEN in the environment), building
// into the test's own directory rather than the checkout's bin/.
func (s *installServer) runMake(t *testing.T, target string, vars ...string) string {
	t.Helper()
	// Long enough for a release build with a cold build cache, which
	// compiles every dependency again (-trimpath).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append([]string{"-s", "-C", "..", target,
		"PLUGIN_DIR=" + s.pluginDir,
		"PLUGIN=" + filepath.Join(s.buildDir, pluginName),
		"EMULATOR=" + filepath.Join(s.buildDir, "datadog-emulator"),
	}, vars...)
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Env = append(vaultEnv(s.addr, s.token), "VAULT_BIN="+s.bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// requireCatalogued checks that the catalog holds the plugin at version,
// run from its own file in the plugin directory, with that file's
// checksum, and returns the checksum.
func (s *installServer) requireCatalogued(t *testing.T, client *api.Client, version string) string {
	t.Helper()
	command := pluginName + "-" + version
	want, err := hostutil.FileSHA256(filepath.Join(s.pluginDir, command))
	if err != nil {
		t.Fatalf("the plugin directory has no %s: %v", command, err)
	}
	info, err := client.Sys().GetPlugin(&api.GetPluginInput{Name: pluginName, Type: api.PluginTypeSecrets, Version: version})
	if err != nil {
		t.Fatalf("reading %s %s from the catalog: %v", pluginName, version, err)
	}
	if info.Command != command || info.SHA256 != want || info.Version != version {
		t.Errorf("catalog entry of %s: command %q, sha256 %s, version %q; want %q, %s (the file's), %q",
			version, info.Command, info.SHA256, info.Version, command, want, version)
	}
	return want
}

// requireMountRuns checks the version a mount is pinned to, the version its
// plugin process reports and the checksum of the binary it runs.
func requireMountRuns(t *testing.T, client *api.Client, path, version, sum string) {
	t.Helper()
	mount, err := client.Sys().GetMount(path)
	if err != nil {
		t.Fatalf("reading mount %s: %v", path, err)
	}
	if mount.PluginVersion != version || mount.RunningVersion != version || mount.RunningSha256 != sum {
		t.Errorf("mount %s: plugin_version %q, running_plugin_version %q, running_sha256 %s; want %q, %q, %s",
			path, mount.PluginVersion, mount.RunningVersion, mount.RunningSha256, version, version, sum)
	}
}

// requireKeysWork checks the answer Datadog gives to a credential's key
// pair: 200 while it is live, 403 once it is deleted.
func requireKeysWork(t *testing.T, dd *datadog, creds map[string]any, want int) {
	t.Helper()
	if got := dd.get(t, "/api/v2/validate_keys", str(t, creds, "api_key"), str(t, creds, "application_key")); got != want {
		t.Errorf("GET /api/v2/validate_keys with the keys of %s: HTTP %d, want %d", creds["name"], got, want)
	}
}
