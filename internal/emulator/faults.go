package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Fault actions: what a faulted call gets instead of a plain answer.
const (
	FaultError           = "error"             // the answer is Status (default 500); nothing is done
	FaultRateLimit       = "rate_limit"        // the answer is a 429 with X-RateLimit headers; nothing is done
	FaultLatency         = "latency"           // the call waits Latency, then is served normally
	FaultReset           = "reset"             // the connection is dropped without an answer; nothing is done
	FaultCommitThenError = "commit_then_error" // the call is served (its change is applied), then answered Status (default 500)
	FaultCommitThenReset = "commit_then_reset" // the call is served (its change is applied), then the connection is dropped
	FaultDelayedCommit   = "delayed_commit"    // the call is answered Status (default 503) at once; Delay later it is served, and that answer discarded
)

var faultActions = []string{FaultError, FaultRateLimit, FaultLatency, FaultReset, FaultCommitThenError, FaultCommitThenReset, FaultDelayedCommit}

// Fault makes calls to an operation fail in a chosen way, to test how a
// client copes with Datadog's failures. Latency adds to any action.
type Fault struct {
	ID          string        `json:"id,omitempty"` // given by AddFault
	Operation   string        `json:"operation"`    // an operationId ("CreateAPIKey"), "METHOD /path/template", or "*" for all
	Action      string        `json:"action"`
	Status      int           `json:"status,omitempty"`      // for error actions; default 500 (503 for delayed_commit)
	Latency     time.Duration `json:"-"`                     // JSON: "latency", a duration such as "250ms"
	Delay       time.Duration `json:"-"`                     // delayed_commit only: from the answer to the change; JSON: "delay", as latency
	Probability float64       `json:"probability,omitempty"` // chance that a matching call is faulted; 0 means every call
	Times       int           `json:"times,omitempty"`       // fault only this many calls, then expire; 0 means until cleared
	Hits        int           `json:"hits"`                  // calls faulted so far
}

func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	return json.Marshal(struct {
		plain
		Latency *jsonDuration `json:"latency,omitempty"`
		Delay   *jsonDuration `json:"delay,omitempty"`
	}{plain(f), omitZero(f.Latency), omitZero(f.Delay)})
}

// omitZero gives nil for a zero duration, which omitempty then leaves out.
func omitZero(d time.Duration) *jsonDuration {
	if d == 0 {
		return nil
	}
	j := jsonDuration(d)
	return &j
}

func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var w struct {
		plain
		Latency jsonDuration `json:"latency"`
		Delay   jsonDuration `json:"delay"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Fault(w.plain)
	f.Latency = time.Duration(w.Latency)
	f.Delay = time.Duration(w.Delay)
	return nil
}

// AddFault installs a fault and returns it with its id. Faults are tried
// in the order they were added; the first that hits a call decides.
func (e *Emulator) AddFault(f Fault) (Fault, error) {
	if err := e.checkFault(f); err != nil {
		return Fault{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faultSeq++
	f.ID = strconv.Itoa(e.faultSeq)
	f.Hits = 0
	e.faults = append(e.faults, &f)
	return f, nil
}

func (e *Emulator) checkFault(f Fault) error {
	switch {
	case !slices.Contains(faultActions, f.Action):
		return fmt.Errorf("unknown fault action %q (known: %v)", f.Action, faultActions)
	case !e.knownOperation(f.Operation):
		return fmt.Errorf("operation %q is not one the emulator answers: give an operationId, \"METHOD /path/template\" or \"*\"", f.Operation)
	case f.Status != 0 && (f.Status < 400 || f.Status > 599):
		return fmt.Errorf("fault status %d is not an error status", f.Status)
	case f.Probability < 0 || f.Probability > 1:
		return fmt.Errorf("fault probability %v is not between 0 and 1", f.Probability)
	case f.Times < 0 || f.Latency < 0 || f.Delay < 0:
		return fmt.Errorf("fault times, latency and delay cannot be negative")
	case f.Action == FaultLatency && f.Latency == 0:
		return fmt.Errorf("a latency fault needs a latency")
	case f.Action == FaultDelayedCommit && f.Delay == 0:
		return fmt.Errorf("a delayed_commit fault needs a delay")
	case f.Action != FaultDelayedCommit && f.Delay != 0:
		return fmt.Errorf("only a delayed_commit fault takes a delay")
	}
	return nil
}

func (e *Emulator) knownOperation(op string) bool {
	return op == "*" || slices.ContainsFunc(e.routes, func(rt route) bool { return rt.matchesOperation(op) })
}

func (rt *route) matchesOperation(op string) bool {
	return op == "*" || op == rt.operationID || op == rt.method+" "+rt.path
}

// Faults returns the active faults.
func (e *Emulator) Faults() []Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Fault, len(e.faults))
	for i, f := range e.faults {
		out[i] = *f
	}
	return out
}

// RemoveFault removes one fault; it reports false for an unknown id.
func (e *Emulator) RemoveFault(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.faults)
	e.faults = slices.DeleteFunc(e.faults, func(f *Fault) bool { return f.ID == id })
	return len(e.faults) < n
}

// ClearFaults removes every fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = nil
}

// drawFault returns the fault that hits this call of rt, or the zero Fault.
// A fault whose Times are used up expires.
func (e *Emulator) drawFault(rt *route) Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, f := range e.faults {
		if !rt.matchesOperation(f.Operation) || f.Probability > 0 && e.rng.Float64() >= f.Probability {
			continue
		}
		f.Hits++
		if f.Times > 0 && f.Hits >= f.Times {
			e.faults = slices.Delete(e.faults, i, i+1)
		}
		return *f
	}
	return Fault{}
}

func (f Fault) errorResponse() response {
	status := f.Status
	switch {
	case status != 0:
	case f.Action == FaultDelayedCommit: // a busy Datadog that queued the change
		status = http.StatusServiceUnavailable
	default:
		status = http.StatusInternalServerError
	}
	return errorResponse(status, http.StatusText(status))
}

// commitLater serves req after delay, through serve as any call (rate
// limit, authentication, permissions, state file, as they are then), and
// discards the answer: its client was already answered. It runs on real
// time, not the emulator's clock, because clients wait in real time.
func (e *Emulator) commitLater(rt *route, req *request, delay time.Duration) {
	e.pendingCommits.Add(1)
	time.AfterFunc(delay, func() {
		defer e.pendingCommits.Add(-1)
		// No net/http here to recover a handler's panic: without this, a
		// bug would end the whole process instead of one call.
		defer func() {
			if p := recover(); p != nil {
				log.Printf("emulator: delayed commit of %s %s: panic: %v", req.Method, req.URL.Path, p)
			}
		}()
		e.serve(rt, req)
	})
}

// PendingCommits is how many calls hit by a delayed_commit fault have been
// answered but not yet applied. Tests wait for it to reach 0.
func (e *Emulator) PendingCommits() int { return int(e.pendingCommits.Load()) }

// detached copies a request so that it can be served after its handler
// returned, when net/http has closed the body and cancelled the context.
func detached(req *request) (*request, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	r := req.Clone(context.WithoutCancel(req.Context()))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return &request{Request: r, params: maps.Clone(req.params)}, nil
}

// dropConnection closes the client's connection without an answer. On TCP
// it resets it, as a crashing proxy would. Without a connection to take
// over (HTTP/2, a recorder), it aborts the handler, which net/http turns
// into a dropped stream.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, isTCP := conn.(*net.TCPConn); isTCP {
		tcp.SetLinger(0) // close with RST, not FIN
	}
	conn.Close()
}
