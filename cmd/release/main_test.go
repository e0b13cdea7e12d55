package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReleaseIsReproducible runs the release twice, for linux/amd64 alone
// to stay cheap, and wants the same bytes in every file. It also checks what
// the archive holds, and that the binary carries no trace of the machine
// that built it.
func TestReleaseIsReproducible(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts := options{version: "v0.2.0", platforms: []string{"linux/amd64"}, root: root}
	first, second := opts, opts
	first.out, second.out = t.TempDir(), t.TempDir()
	// A file of an earlier run of the version must go: the sums would not
	// cover it.
	stale := filepath.Join(second.out, "vault-plugin-secrets-datadog_0.2.0_darwin_arm64.zip")
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []options{first, second} {
		start := time.Now()
		if _, err := release(o); err != nil {
			t.Fatal(err)
		}
		t.Logf("release of linux/amd64 into %s: %s", o.out, time.Since(start).Round(time.Millisecond))
	}

	files := readDir(t, first.out)
	if again := readDir(t, second.out); len(again) != len(files) {
		t.Errorf("two runs wrote different files: %v and %v", names(files), names(again))
	} else {
		for name, data := range files {
			if !bytes.Equal(data, again[name]) {
				t.Errorf("%s differs between two runs of the same commit and version", name)
			}
		}
	}
	const prefix = "vault-plugin-secrets-datadog_0.2.0_"
	wantFiles := []string{prefix + "BINARY_SHA256SUMS", prefix + "SHA256SUMS", prefix + "linux_amd64.zip"}
	if got := names(files); strings.Join(got, " ") != strings.Join(wantFiles, " ") {
		t.Fatalf("release wrote %v, want %v", got, wantFiles)
	}

	archive := files[prefix+"linux_amd64.zip"]
	if want := sha256Hex(archive) + "  " + prefix + "linux_amd64.zip\n"; string(files[prefix+"SHA256SUMS"]) != want {
		t.Errorf("SHA256SUMS = %q, want %q", files[prefix+"SHA256SUMS"], want)
	}
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	modified, err := sourceTime(root)
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []struct {
		name string
		mode fs.FileMode
	}{{"vault-plugin-secrets-datadog", 0o755}, {"LICENSE", 0o644}, {"README.md", 0o644}}
	if len(zr.File) != len(wantEntries) {
		t.Fatalf("the archive holds %d files, want %d", len(zr.File), len(wantEntries))
	}
	var binary []byte
	for i, f := range zr.File {
		want := wantEntries[i]
		if f.Name != want.name || f.Mode() != want.mode || !f.Modified.Equal(modified) {
			t.Errorf("archive entry %d: %s %v %s; want %s %v %s", i, f.Name, f.Mode(), f.Modified, want.name, want.mode, modified)
		}
		data := readZipEntry(t, f)
		if i == 0 {
			binary = data
		} else if source, err := os.ReadFile(filepath.Join(root, f.Name)); err != nil || !bytes.Equal(data, source) {
			t.Errorf("the archive's %s is not the repository's (%v)", f.Name, err)
		}
	}
	if want := sha256Hex(binary) + "  " + prefix + "linux_amd64/vault-plugin-secrets-datadog\n"; string(files[prefix+"BINARY_SHA256SUMS"]) != want {
		t.Errorf("BINARY_SHA256SUMS = %q, want %q", files[prefix+"BINARY_SHA256SUMS"], want)
	}

	// What makes the binary the same on another machine: no path of this
	// one, no VCS stamp, no cgo. (The version it reports to Vault is
	// e2e's TestReleaseInstallAndUpgrade's to check.)
	if bytes.Contains(binary, []byte(root)) {
		t.Errorf("the binary contains the checkout's path %s", root)
	}
	bin := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
		if strings.HasPrefix(s.Key, "vcs") {
			t.Errorf("the binary records %s=%s", s.Key, s.Value)
		}
	}
	for key, want := range map[string]string{"-trimpath": "true", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64"} {
		if settings[key] != want {
			t.Errorf("the binary was built with %s=%q, want %q", key, settings[key], want)
		}
	}
}

// TestReleaseRefusesVersionWithoutChangelogSection: make release exits
// non-zero, saying why, before building anything.
func TestReleaseRefusesVersionWithoutChangelogSection(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dist")
	for version, want := range map[string]string{
		"v9.9.9":      "CHANGELOG.md has no section for v9.9.9",
		"v9.9.9-rc.1": "CHANGELOG.md has no section for v9.9.9-rc.1",
		"9.9.9":       "not a semantic version with a leading v",
		"":            "not a semantic version",
	} {
		err := run([]string{"-version", version, "-out", out, "-platforms", "linux/amd64"}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("release of %q: error %v, want one containing %q", version, err, want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused release created %s (%v)", out, err)
	}
}

func TestChangelogSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "CHANGELOG.md")
	changelog := "# Changelog\n\n## [Unreleased]\n\n## [1.2.0] - 2026-12-06\n\n### Added\n\n- 1.1.0 compatibility\n\n## v1.0.0\n"
	if err := os.WriteFile(path, []byte(changelog), 0o644); err != nil {
		t.Fatal(err)
	}
	for version, ok := range map[string]bool{
		"v1.2.0":         true,
		"v1.2.0-rc.1":    true, // takes its release's section
		"v1.2.0+build.5": true,
		"v1.0.0":         true,
		"v1.1.0":         false, // named in a line, not a heading
		"v1.2.1":         false,
	} {
		err := requireChangelogSection(path, version)
		if (err == nil) != ok {
			t.Errorf("requireChangelogSection(%s) = %v, want a section found: %v", version, err, ok)
		}
	}
}

// TestChangelogHasItsSections checks the repository's CHANGELOG.md: an
// Unreleased section, and v0.2.0 with each kind of change.
func TestChangelogHasItsSections(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.Contains(text, "\n## [Unreleased]\n") {
		t.Error("CHANGELOG.md has no ## [Unreleased] section")
	}
	release := regexp.MustCompile(`(?s)\n## \[0\.2\.0\] - 2026-12-06\n(.*?)(\n## |$)`).FindStringSubmatch(text)
	if release == nil {
		t.Fatal("CHANGELOG.md has no ## [0.2.0] - 2026-12-06 section")
	}
	for _, kind := range []string{"Added", "Changed", "Fixed", "Security", "Upgrade notes"} {
		if !strings.Contains(release[1], "\n### "+kind+"\n") {
			t.Errorf("the 0.2.0 section of CHANGELOG.md has no ### %s", kind)
		}
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

func names(files map[string][]byte) []string {
	return slices.Sorted(maps.Keys(files))
}

func readZipEntry(t *testing.T, f *zip.File) []byte {
	t.Helper()
	r, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s from the archive: %v", f.Name, err)
	}
	return data
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
