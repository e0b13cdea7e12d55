package emulator

// One-Time Read mode. Datadog shows an application key's secret only in the
// answer to its creation in organisations in One-Time Read mode: every
// organisation created since August 2025, and older ones that turned it
// on. Older organisations that did not still show the secret of the
// current user's keys when one is read (GET) or edited (PATCH) through the
// current_user endpoints (recorded in September 2025; the specification of
// both operations says so too). The organisation-wide and service-account
// endpoints never show it after creation (recorded).

// readableSecret reports whether an answer shows a key's secret beyond
// what its kind shows anyway: a current-user application key read or
// edited in an organisation without One-Time Read mode. Callers hold e.mu.
func (e *Emulator) readableSecret(c collection, k *storedKey, v view) bool {
	return e.org.OneTimeReadOff && k.Kind == KindApplicationKey && c.owners == callerOwned &&
		(v == viewRead || v == viewUpdated)
}

// OneTimeRead reports whether the organisation is in One-Time Read mode.
func (e *Emulator) OneTimeRead() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.org.OneTimeReadOff
}

// SetOneTimeRead turns the organisation's One-Time Read mode on or off, as
// an administrator would in the organisation's settings.
func (e *Emulator) SetOneTimeRead(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.org.OneTimeReadOff = !on
	e.saveLogged()
}
