package emulator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
