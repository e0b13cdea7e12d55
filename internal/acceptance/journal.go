package acceptance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// journal is the run's note on disk of what a sweep needs to find and
// that the run prefix alone does not give: the markers of its mounts (the
// engine names the root keys a rotation makes vault-root-<marker>-…, not
// after a role) and the service accounts whose keys it may have made. It
// is written as the run learns them, before the engine could make such an
// object, so that `datadog-acceptance sweep -run <prefix>` finds them after
// a run that was killed. A run that ends clean removes it.
type journal struct {
	path string
	mu   sync.Mutex
	st   journalState
}

type journalState struct {
	RunID           string            `json:"run_id"`
	Prefix          string            `json:"prefix"`
	StartedAt       string            `json:"started_at"`
	Target          string            `json:"target"`
	Mounts          map[string]string `json:"mounts"` // Vault mount path → its marker ("" until known)
	ServiceAccounts []string          `json:"service_accounts"`
}

// Run ids are short lowercase words: the prefix is vault-acc-<id>-.
var (
	reRunID  = regexp.MustCompile(`^[a-z0-9]{4,16}$`)
	reMarker = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// prefixOf is the name prefix of everything a run makes.
func prefixOf(runID string) string { return "vault-acc-" + runID + "-" }

// ParseRun accepts a run id or its prefix (vault-acc-<id>-, with or
// without the final dash) and returns the id.
func ParseRun(s string) (string, error) {
	s = strings.TrimSpace(s)
	id := s
	if rest, ok := strings.CutPrefix(s, "vault-acc-"); ok {
		id = strings.TrimSuffix(rest, "-")
	}
	if !reRunID.MatchString(id) {
		return "", fmt.Errorf("%q is not a run of this suite: want its prefix vault-acc-<id>- (as the run printed it) or the id, 4 to 16 lowercase letters and digits", s)
	}
	return id, nil
}

func journalPath(dir, runID string) string { return filepath.Join(dir, runID+".json") }

func newJournal(dir string, st journalState) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	j := &journal{path: journalPath(dir, st.RunID), st: st}
	if j.st.Mounts == nil {
		j.st.Mounts = map[string]string{}
	}
	return j, j.save()
}

// readJournal reads a run's journal; a missing one is not an error (the
// prefix alone then drives the sweep).
func readJournal(dir, runID string) (journalState, bool, error) {
	var st journalState
	data, err := os.ReadFile(journalPath(dir, runID))
	if os.IsNotExist(err) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, false, fmt.Errorf("reading %s: %w", journalPath(dir, runID), err)
	}
	return st, true, nil
}

func (j *journal) save() error {
	data, err := json.MarshalIndent(j.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, j.path)
}

func (j *journal) update(change func(*journalState)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	change(&j.st)
	return j.save()
}

func (j *journal) addMount(path string) error {
	return j.update(func(st *journalState) {
		if _, ok := st.Mounts[path]; !ok {
			st.Mounts[path] = ""
		}
	})
}

func (j *journal) setMarker(path, marker string) error {
	return j.update(func(st *journalState) { st.Mounts[path] = marker })
}

func (j *journal) addServiceAccount(id string) error {
	return j.update(func(st *journalState) {
		if id != "" && !slices.Contains(st.ServiceAccounts, id) {
			st.ServiceAccounts = append(st.ServiceAccounts, id)
		}
	})
}

func (j *journal) state() journalState {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.st
	st.Mounts = map[string]string{}
	for k, v := range j.st.Mounts {
		st.Mounts[k] = v
	}
	st.ServiceAccounts = slices.Clone(j.st.ServiceAccounts)
	return st
}

func (j *journal) remove() error { return os.Remove(j.path) }

// markers lists the markers a journal knows.
func (st journalState) markers() []string {
	var out []string
	for _, m := range st.Mounts {
		if reMarker.MatchString(m) && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}
