package emulator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	recording "github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/cassette"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// acceptanceRecordings is where recordings of the acceptance suite are
// committed (make acceptance with DD_RECORD=<dir>; README, "Testing against
// a real Datadog organisation"): one directory per run, with run.json and
// cassettes/. Every one of them is replayed.
const acceptanceRecordings = "testdata/recordings"

// TestReplayAcceptanceRecordings replays every recorded acceptance run:
// those committed under testdata/recordings, and the directories listed
// in $DATADOG_ACCEPTANCE_RECORDINGS (separated by the system's list
// separator), to try a new recording before committing it.
func TestReplayAcceptanceRecordings(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(acceptanceRecordings, "*", "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	for _, d := range filepath.SplitList(os.Getenv("DATADOG_ACCEPTANCE_RECORDINGS")) {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no recording in %s: the suite's own recording must be there", acceptanceRecordings)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			stats := emulatortest.ReplayRecording(t, dir)
			t.Logf("%s: %s", dir, stats)
			fmt.Printf("acceptance recording %s: %s\n", filepath.Base(dir), stats)
			if stats.Replayed == 0 {
				t.Errorf("%s replayed nothing", dir)
			}
		})
	}
}

// collectErrors keeps what a replay reports instead of failing the test.
type collectErrors struct {
	testing.TB
	errors []string
}

func (c *collectErrors) Errorf(format string, args ...any) {
	c.errors = append(c.errors, fmt.Sprintf(format, args...))
}

// TestReplayAcceptanceRecordingFindsDifferences: a recording in which
// Datadog answered otherwise than the emulator does (a field the emulator
// does not send, another status) fails its replay, naming the call.
func TestReplayAcceptanceRecordingFindsDifferences(t *testing.T) {
	src := filepath.Join(acceptanceRecordings, "emulator-as-organisation")
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cassettes", recording.FileName("config/app-key-root"))
	c, err := recording.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	changedField, changedStatus, changedProbe := -1, -1, -1
	for i, in := range c.Interactions {
		switch {
		case changedProbe < 0 && in.Request.Header(recording.HeaderNote) == recording.NoteProbe && in.Response.Code == 200:
			// Datadog took a moment to accept a new key: no difference.
			c.Interactions[i].Response.Code = 403
			changedProbe = in.Request.ID
		case changedField < 0 && in.Request.Method == "POST" && strings.HasSuffix(in.Request.URL, "/api/v2/current_user/application_keys"):
			c.Interactions[i].Response.Body = strings.Replace(in.Response.Body, `"attributes":{`, `"attributes":{"rotation_hint":"new in Datadog",`, 1)
			changedField = in.Request.ID
		case changedStatus < 0 && in.Request.Method == "GET" && strings.HasSuffix(in.Request.URL, "/api/v2/validate_keys") &&
			in.Request.Header(recording.HeaderNote) == "" && in.Response.Code == 200:
			c.Interactions[i].Response.Code = 403
			changedStatus = in.Request.ID
		}
	}
	if changedField < 0 || changedStatus < 0 || changedProbe < 0 {
		t.Fatalf("the recording has no key creation, validation or probe to change (%d, %d, %d)", changedField, changedStatus, changedProbe)
	}
	if err := recording.Write(path, c); err != nil {
		t.Fatal(err)
	}
	rec := &collectErrors{TB: t}
	stats := emulatortest.ReplayRecording(rec, dir)
	if stats.Probes != 1 {
		t.Errorf("the replay counted %d probes answered otherwise than recorded, want 1 (#%d)", stats.Probes, changedProbe)
	}
	wants := []string{
		fmt.Sprintf("#%d POST /api/v2/current_user/application_keys (config/app-key-root): the emulator's answer lacks the field data.attributes.rotation_hint", changedField),
		fmt.Sprintf("#%d GET /api/v2/validate_keys (config/app-key-root): status 200, recorded 403", changedStatus),
	}
	for _, want := range wants {
		found := false
		for _, e := range rec.errors {
			found = found || strings.HasPrefix(e, want)
		}
		if !found {
			t.Errorf("the replay did not report %q; it reported %q", want, rec.errors)
		}
	}
	if len(rec.errors) != len(wants) {
		t.Errorf("the replay reported %d differences, want %d: %q", len(rec.errors), len(wants), rec.errors)
	}
}
