package acceptance

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes the run's tables: the scenarios (result, Datadog calls,
// objects left in Datadog, time), the facts, and what Datadog's rate-limit
// headers said.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nacceptance run %s against %s\n\n", r.Prefix, r.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tresult\tcalls\tleftovers\ttime\t")
	counts := map[string]int{}
	leftovers := 0
	var notes []string
	for _, s := range r.Scenarios {
		result := s.Result
		if s.Result == "skipped" && s.Detail != "" {
			result = "skipped: " + s.Detail
		}
		counts[s.Result]++
		leftovers += s.Leftovers
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t\n", s.Name, result, s.Calls, s.Leftovers, roundDuration(s.Seconds))
		if s.Result != "skipped" && s.Detail != "" && s.Name != "setup" || s.Name == "setup" && s.Result != "pass" {
			notes = append(notes, fmt.Sprintf("  %s (%s): %s", s.Name, s.Result, s.Detail))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntotal: %d pass, %d fail, %d skipped", counts["pass"], counts["fail"], counts["skipped"])
	if counts["interrupted"] > 0 {
		fmt.Fprintf(w, ", %d interrupted", counts["interrupted"])
	}
	fmt.Fprintf(w, "; %d Datadog calls (%d by the engine, %d by the suite); %d leftovers, %d after the sweep; %s\n",
		r.Calls, r.ByCaller["engine"], r.ByCaller["suite"], leftovers, r.LeftAfterSweep, r.Duration.Round(time.Second))
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}

	fmt.Fprintln(w, "\nfacts the emulator assumes, as this Datadog answered:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fact\tresult\tseen")
	for _, f := range r.Facts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.Result, f.Seen)
	}
	tw.Flush()
	for _, f := range r.Facts {
		if f.Result == "differs" {
			fmt.Fprintf(w, "  differs: %s — the emulator: %s\n", f.Name, f.Expected)
		}
	}

	if len(r.RateLimits) == 0 {
		fmt.Fprintln(w, "\nrate limits: no X-RateLimit-* header seen (the emulator sends them only for a limit it was given)")
	} else {
		var parts []string
		for _, l := range r.RateLimits {
			parts = append(parts, fmt.Sprintf("%s %d/%ds (lowest remaining %d, %d refused)", l.Name, l.Limit, l.Period, l.MinRemaining, l.Refused))
		}
		fmt.Fprintf(w, "\nrate limits seen: %s\n", strings.Join(parts, "; "))
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if r.RecordDir != "" {
		fmt.Fprintf(w, "\nrecording: %s\n", r.RecordDir)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "Vault's log and data are kept in %s\n", r.WorkDir)
	}
	switch {
	case r.Interrupted:
		fmt.Fprintf(w, "\nINTERRUPTED: cleaned up as above; if anything is left, make acceptance-sweep RUN=%s\n", r.Prefix)
	case r.OK():
		fmt.Fprintln(w, "\nPASS")
	default:
		fmt.Fprintln(w, "\nFAIL")
	}
}

func roundDuration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
