package e2e

import "sync"

// Every secret the suite configures or is issued, and every error message
// a test saw, so that the suite can prove that none of the secrets appears
// in a log, an audit file or an error.
var (
	secretsMu  sync.Mutex
	secrets    = map[string]bool{}
	errorsSeen []string
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
	errorsSeen = append(errorsSeen, err.Error())
}
