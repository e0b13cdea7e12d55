package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/hostutil"
)

// Every secret the suite configures or is issued, and every error message
// a test saw, so that the suite can prove that none of the secrets appears
// in a log, an audit file or an error.
var (
	secretsMu  sync.Mutex
	secrets    = map[string]bool{}
	errorsSeen []string
	seenBefore = map[string]bool{} // errorsSeen as a set: tests often see the same refusal
)

// noteSecret records secrets (root keys, issued keys, tokens); empty
// values are ignored.
func noteSecret(values ...string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for _, v := range values {
		if v != "" {
			secrets[v] = true
		}
	}
}

// noteError records the text of an error a test saw.
func noteError(err error) {
	if err == nil {
		return
	}
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if msg := err.Error(); !seenBefore[msg] {
		seenBefore[msg] = true
		errorsSeen = append(errorsSeen, msg)
	}
}

// credentialSecretFields are the fields of a creds response that hold a
// secret, whatever the credential kind.
var credentialSecretFields = []string{"api_key", "application_key", "access_token"}

// noteIssuedCredentials records the secrets of a creds response's data.
func noteIssuedCredentials(data map[string]any) {
	for _, field := range credentialSecretFields {
		if s, ok := data[field].(string); ok {
			noteSecret(s)
		}
	}
}

// recorded returns copies of the secrets and error messages recorded so far.
func recorded() (secretList, errs []string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for s := range secrets {
		secretList = append(secretList, s)
	}
	slices.Sort(secretList)
	return secretList, slices.Clone(errorsSeen)
}

// describeSecret names a secret in a report without giving it away.
func describeSecret(secret string) string {
	return fmt.Sprintf("%s… (%d characters)", secret[:min(6, len(secret)/2)], len(secret))
}

// redact replaces each of secretList in s by its description.
func redact(s string, secretList []string) string {
	for _, secret := range secretList {
		s = strings.ReplaceAll(s, secret, describeSecret(secret))
	}
	return s
}

// redactSecrets is for failure messages that would show a response or a
// command line: the test's output is a log too.
func redactSecrets(s string) string {
	secretList, _ := recorded()
	return redact(s, secretList)
}

// secretFound is one secret found in plain text where no secret belongs.
type secretFound struct {
	where  string // a file and line, or an error message (redacted)
	secret string
}

func (f secretFound) String() string {
	return fmt.Sprintf("%s holds the secret %s", f.where, describeSecret(f.secret))
}

// findSecrets looks for each secret, in plain text, in every regular file
// under dir (except under skipDirs, and executables) and in each error
// message. It returns what it found and the files it read.
func findSecrets(secretList []string, dir string, skipDirs []string, errs []string) (found []secretFound, scanned []string, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if slices.Contains(skipDirs, path) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // sockets and the like
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.HasPrefix(data, []byte("\x7fELF")) {
			return nil // an executable (another copy of the plugin, say)
		}
		scanned = append(scanned, path)
		for _, secret := range secretList {
			if i := bytes.Index(data, []byte(secret)); i >= 0 {
				line := bytes.Count(data[:i], []byte("\n")) + 1
				times := bytes.Count(data, []byte(secret))
				found = append(found, secretFound{fmt.Sprintf("%s (line %d, %d times in all)", path, line, times), secret})
			}
		}
		return nil
	})
	for _, msg := range errs {
		for _, secret := range secretList {
			if strings.Contains(msg, secret) {
				found = append(found, secretFound{fmt.Sprintf("an error a test saw (%q)", redact(msg, secretList)), secret})
			}
		}
	}
	return found, scanned, err
}

// minRecordedSecrets is far fewer than a whole run records (two root keys
// per emulator, the keys of every lease): fewer means secrets went
// unrecorded and the scan proves little.
const minRecordedSecrets = 20

// checkNoSecretInLogs scans the suite's work directory and the errors tests
// saw for every recorded secret. With the whole suite run, it also insists
// that there was something to find: enough secrets, audit files that hold
// the (hashed) issued credentials, and the plugin process's debug lines in
// Vault's log. It returns a summary of what it checked, and an error saying
// what is wrong, if anything.
func checkNoSecretInLogs(wholeSuite bool) (string, error) {
	secretList, errs := recorded()
	var problems []string
	if wholeSuite && len(secretList) < minRecordedSecrets {
		problems = append(problems, fmt.Sprintf("only %d secrets were recorded, want at least %d: tests issue secrets without noteSecret", len(secretList), minRecordedSecrets))
	}

	var audited []string
	for _, path := range auditLogs {
		info, err := os.Stat(path)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		hashed, err := countHashedCredentials(path)
		if err != nil {
			problems = append(problems, err.Error())
		}
		audited = append(audited, fmt.Sprintf("%s: %d bytes, %d creds responses", filepath.Base(path), info.Size(), hashed))
		switch {
		case info.Size() == 0:
			problems = append(problems, fmt.Sprintf("audit file %s is empty", path))
		case wholeSuite && hashed == 0:
			problems = append(problems, fmt.Sprintf("audit file %s records no creds response with a hashed secret", path))
		}
	}

	pluginLines, err := countPluginDebugLines(vault.logPath)
	if err != nil {
		problems = append(problems, err.Error())
	} else if wholeSuite && pluginLines == 0 {
		problems = append(problems, fmt.Sprintf("%s has no debug or trace line from the plugin process: its logs were filtered out", vault.logPath))
	}

	found, scanned, err := findSecrets(secretList, workDir, []string{pluginDir}, errs)
	if err != nil {
		problems = append(problems, fmt.Sprintf("scanning %s: %v", workDir, err))
	}
	for _, f := range found {
		problems = append(problems, f.String())
	}

	summary := fmt.Sprintf("%d secrets and %d distinct errors recorded; %d files scanned under %s (%s; %d debug or trace lines of the plugin process in %s)",
		len(secretList), len(errs), len(scanned), workDir, strings.Join(audited, ", "), pluginLines, filepath.Base(vault.logPath))
	if len(problems) > 0 {
		return summary, fmt.Errorf("secret leak check failed:\n  %s", strings.Join(problems, "\n  "))
	}
	return summary, nil
}

// countHashedCredentials counts an audit file's creds responses whose
// secrets are there, as Vault's HMAC: proof that issued credentials went
// through the audit device (which must not write them in plain text).
func countHashedCredentials(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		var entry struct {
			Type     string `json:"type"`
			Response struct {
				Data map[string]any `json:"data"`
			} `json:"response"`
		}
		if json.Unmarshal(line, &entry) != nil || entry.Type != "response" {
			continue
		}
		for _, field := range credentialSecretFields {
			if v, _ := entry.Response.Data[field].(string); strings.HasPrefix(v, "hmac-sha256:") {
				n++
				break
			}
		}
	}
	return n, nil
}

// pluginProcessLine matches a debug or trace line that the plugin process
// itself logged: go-plugin re-logs the process's stderr under the plugin
// client's logger, named again after the binary.
var pluginProcessLine = regexp.MustCompile(`(?m)\[(?:DEBUG|TRACE)\] \S*` + regexp.QuoteMeta(pluginName+"."+pluginName) + `: `)

func countPluginDebugLines(logPath string) (int, error) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0, err
	}
	return len(pluginProcessLine.FindAllIndex(data, -1)), nil
}

// TestSecretScanFindsAPlantedSecret proves that the leak check can fail: a
// secret planted in a file (deep in the tree) and one in an error message
// are both reported, without being printed; the skipped directory and
// executables are not read.
func TestSecretScanFindsAPlantedSecret(t *testing.T) {
	t.Parallel()
	inFile, inError, inSkipped := "ddapp_"+hostutil.RandomHex(17), hostutil.RandomHex(16), hostutil.RandomHex(16)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "node-2", "vault.log")
	skipped := filepath.Join(dir, "plugins")
	for path, content := range map[string]string{
		logPath:                               "starting\nconfig written: api_key=" + inFile + "\n",
		filepath.Join(dir, "audit.log"):       `{"data":{"api_key":"hmac-sha256:00"}}`,
		filepath.Join(skipped, "plugin"):      inSkipped,
		filepath.Join(dir, "helper-binary"):   "\x7fELF" + inSkipped,
		filepath.Join(dir, "node-2", "empty"): "",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	found, scanned, err := findSecrets([]string{inFile, inError, inSkipped}, dir, []string{skipped},
		[]string{"unrelated error", "Datadog refused key " + inError + ": HTTP 403"})
	if err != nil {
		t.Fatal(err)
	}
	if len(scanned) != 3 {
		t.Errorf("scanned %v, want the 3 files outside %s that are not executables", scanned, skipped)
	}
	var report []string
	for _, f := range found {
		report = append(report, f.String())
	}
	joined := strings.Join(report, "\n")
	if len(found) != 2 || found[0].secret != inFile || found[1].secret != inError {
		t.Fatalf("found %d secrets, want the one planted in %s and the one in an error:\n%s", len(found), logPath, joined)
	}
	if !strings.Contains(report[0], logPath+" (line 2,") || !strings.Contains(report[0], "ddapp_… (40 characters)") {
		t.Errorf("report %q does not name the file, the line and the secret's prefix and length", report[0])
	}
	if !strings.Contains(report[1], "Datadog refused key "+inError[:6]+"…") {
		t.Errorf("report %q does not show the error with the secret cut short", report[1])
	}
	for _, secret := range []string{inFile, inError} {
		if strings.Contains(joined, secret) {
			t.Errorf("the report gives away a secret:\n%s", joined)
		}
	}
}
