// Command release writes the engine's release artifacts, the way HashiCorp
// ships its own plugins: for each platform an archive
// vault-plugin-secrets-datadog_<version>_<os>_<arch>.zip holding the plugin
// binary, LICENSE and README.md, then
//
//	vault-plugin-secrets-datadog_<version>_SHA256SUMS         the archives' SHA-256 (sha256sum -c)
//	vault-plugin-secrets-datadog_<version>_BINARY_SHA256SUMS  each binary's, as vault plugin register -sha256 takes it
//
// <version> is the release's version without its leading v. The same commit
// and version give byte-identical files: the binaries are built with
// -trimpath, without VCS stamps or cgo, and the archives hold their files in a
// fixed order with fixed modes and the commit's time. `make release` runs it:
//
//	go run ./cmd/release -version v0.2.0 [-platforms "linux/amd64 darwin/arm64"] [-out dist]
//
// A version needs its section in CHANGELOG.md (a pre-release, such as
// v0.2.0-rc.1, that of its release), or nothing is built.
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

const (
	pluginName = "vault-plugin-secrets-datadog"
	module     = "github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog"
	// versionVar is what Vault learns the plugin's version from.
	versionVar = module + "/backend.Version"
)

// defaultPlatforms are the 64-bit platforms Vault itself is released for
// that operators run servers on.
var defaultPlatforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64"}

// versionPattern is a semantic version with its leading v, as Vault's plugin
// catalog shows versions.
var versionPattern = regexp.MustCompile(`^v(\d+\.\d+\.\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

var platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`)

type options struct {
	version   string   // v0.2.0
	platforms []string // os/arch
	out       string   // where the artifacts go
	root      string   // the module's directory: sources, CHANGELOG.md, LICENSE, README.md
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("release", flag.ContinueOnError)
	version := flags.String("version", "", "version to release, such as v0.2.0 (required)")
	platforms := flags.String("platforms", strings.Join(defaultPlatforms, " "), "os/arch pairs to build, separated by spaces or commas")
	out := flags.String("out", "dist", "directory to write the artifacts to")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	opts := options{version: *version, out: *out, root: root}
	opts.platforms = strings.FieldsFunc(*platforms, func(r rune) bool { return r == ' ' || r == ',' })
	files, err := release(opts)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "%s  %s  %d bytes\n", f.sha256, filepath.Join(opts.out, f.name), f.size)
	}
	return nil
}

// artifact is one file release wrote.
type artifact struct {
	name   string // file name in the output directory
	size   int64
	sha256 string
}

// release builds every platform's archive into opts.out, then the two sums
// files, and returns what it wrote. Files of an earlier run of the same
// version go first, so that the sums cover exactly the archives there.
func release(opts options) ([]artifact, error) {
	m := versionPattern.FindStringSubmatch(opts.version)
	if m == nil {
		return nil, fmt.Errorf("VERSION=%q is not a semantic version with a leading v, such as v0.2.0 or v0.2.0-rc.1", opts.version)
	}
	if err := requireChangelogSection(filepath.Join(opts.root, "CHANGELOG.md"), opts.version); err != nil {
		return nil, err
	}
	if len(opts.platforms) == 0 {
		return nil, errors.New("no platform to build")
	}
	for _, p := range opts.platforms {
		if !platformPattern.MatchString(p) {
			return nil, fmt.Errorf("platform %q is not os/arch, such as linux/amd64", p)
		}
	}
	modified, err := sourceTime(opts.root)
	if err != nil {
		return nil, err
	}
	warnIfDirty(opts.root)

	fileVersion := strings.TrimPrefix(opts.version, "v")
	prefix := pluginName + "_" + fileVersion + "_"
	if err := os.MkdirAll(opts.out, 0o755); err != nil {
		return nil, err
	}
	stale, err := filepath.Glob(filepath.Join(opts.out, prefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return nil, err
		}
	}
	buildDir, err := os.MkdirTemp("", "release-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(buildDir)

	var archives []artifact
	var binarySums []string
	for _, platform := range slices.Sorted(slices.Values(opts.platforms)) {
		goos, goarch, _ := strings.Cut(platform, "/")
		binary := pluginName
		if goos == "windows" {
			binary += ".exe"
		}
		bin := filepath.Join(buildDir, goos+"_"+goarch, binary)
		if err := build(opts.root, opts.version, goos, goarch, bin); err != nil {
			return nil, err
		}
		sum, err := hostutil.FileSHA256(bin)
		if err != nil {
			return nil, err
		}
		// The path the binary has once the archive is unzipped into a
		// directory of its own name, so that sha256sum -c can check it there.
		base := prefix + goos + "_" + goarch
		binarySums = append(binarySums, sum+"  "+base+"/"+binary+"\n")
		archive := base + ".zip"
		err = writeZip(filepath.Join(opts.out, archive), modified, []zipEntry{
			{name: binary, mode: 0o755, src: bin},
			{name: "LICENSE", mode: 0o644, src: filepath.Join(opts.root, "LICENSE")},
			{name: "README.md", mode: 0o644, src: filepath.Join(opts.root, "README.md")},
		})
		if err != nil {
			return nil, err
		}
		a, err := describe(opts.out, archive)
		if err != nil {
			return nil, err
		}
		archives = append(archives, a)
	}

	var archiveSums []string
	for _, a := range archives {
		archiveSums = append(archiveSums, a.sha256+"  "+a.name+"\n")
	}
	files := archives
	// Both lists are in the order of the platforms, sorted: by file name.
	for name, lines := range map[string][]string{prefix + "SHA256SUMS": archiveSums, prefix + "BINARY_SHA256SUMS": binarySums} {
		if err := os.WriteFile(filepath.Join(opts.out, name), []byte(strings.Join(lines, "")), 0o644); err != nil {
			return nil, err
		}
		a, err := describe(opts.out, name)
		if err != nil {
			return nil, err
		}
		files = append(files, a)
	}
	slices.SortFunc(files, func(a, b artifact) int { return strings.Compare(a.name, b.name) })
	return files, nil
}

// changelogHeading is a version's heading in a Keep a Changelog file:
// "## [0.2.0] - 2026-12-06", or "## [Unreleased]".
var changelogHeading = regexp.MustCompile(`^##\s+\[?v?([^\]\s]+)\]?`)

// requireChangelogSection refuses a version that CHANGELOG.md does not
// describe: a release must say what changed. A pre-release or a build takes
// its release's section (v0.2.0-rc.1 that of 0.2.0) when it has none itself.
func requireChangelogSection(path, version string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the changelog: %w", err)
	}
	want := strings.TrimPrefix(version, "v")
	core := want
	if m := versionPattern.FindStringSubmatch(version); m != nil {
		core = m[1]
	}
	var sections []string
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		m := changelogHeading.FindStringSubmatch(scanner.Text())
		if m == nil {
			continue
		}
		if m[1] == want || m[1] == core {
			return nil
		}
		sections = append(sections, m[1])
	}
	return fmt.Errorf("%s has no section for %s: add one (\"## [%s] - YYYY-MM-DD\", with what changed) before releasing it; its sections: %s",
		filepath.Base(path), version, core, strings.Join(sections, ", "))
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module: run it from the repository")
	}
	return filepath.Dir(gomod), nil
}

// sourceTime is the modification time of every file in the archives:
// $SOURCE_DATE_EPOCH if set, else the time of the commit built, so that it
// says how old the release is and stays the same for the same commit.
func sourceTime(root string) (time.Time, error) {
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("no commit time for the archives' files (git log: %v); set SOURCE_DATE_EPOCH", err)
		}
		epoch = strings.TrimSpace(string(out))
	}
	seconds, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", epoch)
	}
	// In UTC: a zip's MS-DOS times are local times, taken from the fields.
	return time.Unix(seconds, 0).UTC(), nil
}

// warnIfDirty says so when uncommitted changes go into the build: its
// archives are then no commit's, and nobody can build them again.
func warnIfDirty(root string) {
	out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(out)) > 0 {
		fmt.Fprintln(os.Stderr, "release: warning: the working tree has uncommitted changes; these archives are not those of its commit")
	}
}

// build compiles the plugin for one platform, reproducibly: the same source
// and Go version give the same bytes wherever they are built.
func build(root, version, goos, goarch, out string) error {
	cmd := exec.Command("go", "build",
		"-trimpath",       // no path of this machine in the binary
		"-buildvcs=false", // nor the state of its checkout
		"-ldflags", "-s -w -X "+versionVar+"="+version,
		"-o", out, module+"/cmd/vault-plugin-secrets-datadog")
	cmd.Dir = root
	cmd.Env = append(buildEnv(os.Environ()), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s/%s: %v\n%s", goos, goarch, err, output)
	}
	return nil
}

// buildEnv is env without the settings that would make a release build
// differ from another machine's: the target, cgo, instruction set levels,
// experiments and extra flags.
func buildEnv(env []string) []string {
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS", "GOEXPERIMENT",
			"GOAMD64", "GOARM", "GOARM64", "GO386", "GOMIPS", "GOMIPS64", "GOPPC64", "GORISCV64", "GOWASM":
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

type zipEntry struct {
	name string      // in the archive
	mode fs.FileMode // unzip gives the file this mode
	src  string
}

// writeZip writes the entries, in their order, into a new archive at path,
// every one with the time modified, so that the archive's bytes depend on the
// files' contents alone.
func writeZip(path string, modified time.Time, entries []zipEntry) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := zip.NewWriter(tmp)
	for _, e := range entries {
		header := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: modified}
		header.SetMode(e.mode)
		dst, err := w.CreateHeader(header)
		if err != nil {
			return err
		}
		src, err := os.Open(e.src)
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("adding %s to %s: %w", e.src, path, err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func describe(dir, name string) (artifact, error) {
	path := filepath.Join(dir, name)
	info, err := os.Stat(path)
	if err != nil {
		return artifact{}, err
	}
	sum, err := hostutil.FileSHA256(path)
	return artifact{name: name, size: info.Size(), sha256: sum}, err
}
