package emulator

import (
	"encoding/json"
	"fmt"
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
)

var faultActions = []string{FaultError, FaultRateLimit, FaultLatency, FaultReset, FaultCommitThenError, FaultCommitThenReset}

// Fault makes calls to an operation fail in a chosen way, to test how a
// client copes with Datadog's failures. Latency adds to any action.
type Fault struct {
	ID          string        `json:"id,omitempty"` // given by AddFault
	Operation   string        `json:"operation"`    // an operationId ("CreateAPIKey"), "METHOD /path/template", or "*" for all
	Action      string        `json:"action"`
	Status      int           `json:"status,omitempty"`      // for error actions; default 500
	Latency     time.Duration `json:"-"`                     // JSON: "latency", a duration such as "250ms"
	Probability float64       `json:"probability,omitempty"` // chance that a matching call is faulted; 0 means every call
	Times       int           `json:"times,omitempty"`       // fault only this many calls, then expire; 0 means until cleared
	Hits        int           `json:"hits"`                  // calls faulted so far
}

func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	var latency *jsonDuration
	if f.Latency != 0 {
		d := jsonDuration(f.Latency)
		latency = &d
	}
	return json.Marshal(struct {
		plain
		Latency *jsonDuration `json:"latency,omitempty"`
	}{plain(f), latency})
}

func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var w struct {
		plain
		Latency jsonDuration `json:"latency"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Fault(w.plain)
	f.Latency = time.Duration(w.Latency)
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
	case f.Times < 0 || f.Latency < 0:
		return fmt.Errorf("fault times and latency cannot be negative")
	case f.Action == FaultLatency && f.Latency == 0:
		return fmt.Errorf("a latency fault needs a latency")
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
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return errorResponse(status, http.StatusText(status))
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
