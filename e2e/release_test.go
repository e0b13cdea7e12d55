package e2e

import (
	"archive/zip"
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

// TestReleaseInstallAndUpgrade installs the engine from release archives as
// the README's "Install from a release" tells an operator, in a server not in
// dev mode: make release builds v0.2.0-rc.1 (for this machine's platform
// only), its archive is checked against the release's SHA256SUMS and
// unzipped into the plugin directory, and the binary is registered with its
// sum from BINARY_SHA256SUMS and its version. The mount issues and revokes a
// credential. Then the README's "Upgrade" moves it to a v0.2.0 release build
// (register, secrets tune -plugin-version, reload), and a lease issued
// before the upgrade must revoke through it, its keys gone from Datadog.
func TestReleaseInstallAndUpgrade(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	srv := startInstallServer(t)
	client := srv.rootClient(t)

	rc := srv.installRelease(t, client, srv.buildRelease(t, "v0.2.0-rc.1"), "v0.2.0-rc.1")
	srv.mustCLI(t, "secrets", "enable", "-path=datadog", pluginName)
	disableAtCleanup(t, client, "datadog", dd)
	// The version the plugin process reports is the one make release built
	// into it, and the file Vault runs has the published checksum.
	requireMountRuns(t, client, "datadog", "v0.2.0-rc.1", rc)
	configure(t, client, "datadog", dd)
	write(t, client, "datadog/roles/reader", map[string]any{"scopes": "dashboards_read", "ttl": "1h"})

	issued := readCreds(t, client, "datadog/creds/reader")
	dd.requireKeysIssued(t, issued.Data, "reader", []string{"dashboards_read"})
	requireKeysWork(t, dd, issued.Data, http.StatusOK)
	if err := client.Sys().Revoke(issued.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued by the release build: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(issued.Data)...)
	requireKeysWork(t, dd, issued.Data, http.StatusForbidden)

	before := readCreds(t, client, "datadog/creds/reader")
	requireKeysWork(t, dd, before.Data, http.StatusOK)

	final := srv.installRelease(t, client, srv.buildRelease(t, "v0.2.0"), "v0.2.0")
	if final == rc {
		t.Fatalf("the v0.2.0-rc.1 and v0.2.0 release binaries have the same sha256 %s: the version is not built in", rc)
	}
	srv.mustCLI(t, "secrets", "tune", "-plugin-version=v0.2.0", "datadog")
	srv.mustCLI(t, "write", "sys/plugins/reload/backend", "mounts=datadog")
	requireMountRuns(t, client, "datadog", "v0.2.0", final)

	if err := client.Sys().Revoke(before.LeaseID); err != nil {
		t.Fatalf("revoking the lease issued by v0.2.0-rc.1 after the upgrade: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(before.Data)...)
	requireKeysWork(t, dd, before.Data, http.StatusForbidden)

	after := readCreds(t, client, "datadog/creds/reader")
	requireKeysWork(t, dd, after.Data, http.StatusOK)
	if err := client.Sys().Revoke(after.LeaseID); err != nil {
		t.Fatalf("revoking a lease issued by v0.2.0: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(after.Data)...)
}

// buildRelease runs make release for version and this machine's platform
// alone, into a directory of the test's (outside workDir: archives hold no
// secret to scan for), and returns that directory.
func (s *installServer) buildRelease(t *testing.T, version string) string {
	t.Helper()
	dist := t.TempDir()
	start := time.Now()
	s.runMake(t, "release", "VERSION="+version, "PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH, "DIST="+dist)
	t.Logf("make release VERSION=%s for %s/%s: %s", version, runtime.GOOS, runtime.GOARCH, time.Since(start).Round(time.Second))
	return dist
}

// installRelease installs a release's archive for this platform from dist as
// an operator does: check the archive against the release's SHA256SUMS,
// unzip the binary into the plugin directory under the version's own file
// name, and register it with the checksum BINARY_SHA256SUMS publishes. It
// returns that checksum, which the catalog must hold.
func (s *installServer) installRelease(t *testing.T, client *api.Client, dist, version string) string {
	t.Helper()
	prefix := pluginName + "_" + strings.TrimPrefix(version, "v") + "_"
	platform := prefix + runtime.GOOS + "_" + runtime.GOARCH
	archive := filepath.Join(dist, platform+".zip")

	// sha256sum -c --ignore-missing <prefix>SHA256SUMS
	got, err := hostutil.FileSHA256(archive)
	if err != nil {
		t.Fatal(err)
	}
	if want := publishedSum(t, filepath.Join(dist, prefix+"SHA256SUMS"), platform+".zip"); got != want {
		t.Fatalf("%s has sha256 %s, SHA256SUMS says %s", archive, got, want)
	}

	// unzip, and copy the binary to the plugin directory.
	zr, err := zip.OpenReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if want := []string{pluginName, "LICENSE", "README.md"}; !slices.Equal(names, want) {
		t.Errorf("%s holds %v, want %v", archive, names, want)
	}
	command := pluginName + "-" + version
	extractFile(t, zr, pluginName, filepath.Join(s.pluginDir, command))

	// vault plugin register with the published checksum and the version.
	sum := publishedSum(t, filepath.Join(dist, prefix+"BINARY_SHA256SUMS"), platform+"/"+pluginName)
	s.mustCLI(t, "plugin", "register", "-sha256="+sum, "-version="+version, "-command="+command, "secret", pluginName)
	if catalogued := s.requireCatalogued(t, client, version); catalogued != sum {
		t.Errorf("the unzipped binary's sha256 is %s, BINARY_SHA256SUMS says %s", catalogued, sum)
	}
	return sum
}

// publishedSum returns the checksum a sums file (sha256sum's format) gives
// for name.
func publishedSum(t *testing.T, sumsFile, name string) string {
	t.Helper()
	f, err := os.Open(sumsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if sum, file, ok := strings.Cut(scanner.Text(), "  "); ok && file == name {
			return sum
		}
	}
	t.Fatalf("%s has no line for %s", sumsFile, name)
	return ""
}

// extractFile writes the archive's file name to dst, executable, as unzip
// and install -m 0755 would.
func extractFile(t *testing.T, zr *zip.ReadCloser, name, dst string) {
	t.Helper()
	src, err := zr.Open(name)
	if err != nil {
		t.Fatalf("the archive has no %s: %v", name, err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
