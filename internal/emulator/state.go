package emulator

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"time"
)

// stateVersion changes when the state file's layout does.
const stateVersion = 1

type stateFile struct {
	Version int  `json:"version"`
	Org     *org `json:"org"`
}

// load reads the state file, if there is one. Callers hold no lock: it runs
// before e is shared.
func (e *Emulator) load() (bool, error) {
	if e.stateFile == "" {
		return false, nil
	}
	raw, err := os.ReadFile(e.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading state file: %w", err)
	}
	var s stateFile
	if err := json.Unmarshal(raw, &s); err != nil {
		return false, fmt.Errorf("state file %s: %w", e.stateFile, err)
	}
	if s.Version != stateVersion || s.Org == nil || s.Org.Users[s.Org.AdminID] == nil {
		return false, fmt.Errorf("state file %s: not a version %d emulator state", e.stateFile, stateVersion)
	}
	e.org = s.Org
	e.advance.Store(int64(e.org.ClockAdvance))
	for _, k := range e.org.Keys {
		if kinds[k.Kind] == nil {
			return false, fmt.Errorf("state file %s: key %s has unknown kind %q", e.stateFile, k.ID, k.Kind)
		}
		if k.RevokedAt == nil {
			e.bySecret[k.Secret] = k
		}
	}
	// Files from before the API key cap hold neither it nor the peak.
	e.org.MaxAPIKeys = cmp.Or(e.org.MaxAPIKeys, defaultMaxAPIKeys)
	e.noteAPIKeyPeak()
	return true, nil
}

// save writes the organisation to the state file, if there is one,
// atomically: to a temporary file, then renamed over the old one. Callers
// hold e.mu (or run before e is shared). The file holds secrets: it is
// readable by its owner only.
func (e *Emulator) save() error {
	if e.stateFile == "" {
		return nil
	}
	e.org.ClockAdvance = time.Duration(e.advance.Load())
	raw, err := json.MarshalIndent(stateFile{Version: stateVersion, Org: e.org}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(e.stateFile), filepath.Base(e.stateFile)+".*.tmp")
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	_, err = tmp.Write(raw)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), e.stateFile)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving state: %w", err)
	}
	return nil
}

// saveLogged saves after a change. A failure cannot be the client's
// answer (the change is made), so it is logged.
func (e *Emulator) saveLogged() {
	if err := e.save(); err != nil {
		log.Printf("emulator: %v", err)
	}
}
