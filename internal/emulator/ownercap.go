package emulator

import "fmt"

// setAppKeyCap sets the most application keys one owner may hold: Datadog's
// limit when n is 0, or a lower one. A higher one would let a client pass
// where Datadog refuses.
func (e *Emulator) setAppKeyCap(n int) error {
	switch {
	case n < 0 || n > maxAppKeysPerUser:
		return fmt.Errorf("the application key limit per owner must be between 1 and Datadog's %d (0: Datadog's), not %d", maxAppKeysPerUser, n)
	case n == 0:
		n = maxAppKeysPerUser
	}
	e.appKeyCap = n
	return nil
}

// perOwnerLimit is the most keys of the kind one owner may hold here; 0
// for no limit.
func (e *Emulator) perOwnerLimit(kind *keyKind) int {
	if kind.perOwnerLimit == 0 {
		return 0
	}
	return e.appKeyCap
}

// listMeta is a list answer's meta, with the limits this organisation
// enforces where Datadog reports its own. Callers hold e.mu.
func (e *Emulator) listMeta(kind *keyKind, total int) map[string]any {
	meta := kind.meta(total)
	if _, reported := meta["max_allowed_per_user"]; reported {
		meta["max_allowed_per_user"] = e.perOwnerLimit(kind)
	}
	if _, reported := meta["max_allowed"]; reported {
		meta["max_allowed"] = e.org.MaxAPIKeys
	}
	return meta
}
