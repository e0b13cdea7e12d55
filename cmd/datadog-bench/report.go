package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// serverReport is everything measured on one server.
type serverReport struct {
	kind   string
	cells  []*cell
	idle   memory
	peak   memory
	expiry *expiryReport
}

var serverTitles = map[string]string{
	"dev":  "Vault dev server (in-memory storage)",
	"raft": "Vault server with integrated storage (raft, one node)",
}

func printHeader(opts *options) {
	fmt.Printf("# Datadog secrets engine benchmark\n\n")
	version, err := exec.Command(opts.vaultBin, "version").Output()
	if err != nil {
		version = []byte("Vault (version unknown)")
	}
	fmt.Printf("%s, %s, engine %s, %d CPUs; each operation runs %s per concurrency; Datadog emulator latency %s.\n\n",
		time.Now().Format("2006-01-02 15:04"), strings.TrimSpace(string(version)), opts.pluginVersion, runtime.NumCPU(), opts.duration, opts.latency)
	fmt.Println(`Every client loops over its operation with its own keep-alive connections. A creds read and a read of the
leased-secret floor are each followed by the revocation of their lease (sys/leases/revoke, synchronous), timed
on its own row; a direct Datadog create by the deletion of what it made. ops/s counts these cycles. The ratios
divide the engine's figure by the sum of its floors at the same percentile and concurrency:
"÷ leased floor" by the leased-secret floor's read (its revoke for a revoke) plus the direct Datadog create
(delete), "÷ kv floor" by a kv-v2 read plus the direct Datadog create, "÷ crash-safe floor" by the crash-safe
floor alone: a plugin that writes one storage entry, creates an application key directly with
datadog-api-client-go and rewrites the entry (its revoke deletes the key, then the entry), the least an engine
that never loses a key can do.`)
	fmt.Println()
}

func (r *serverReport) print(opts *options) {
	fmt.Printf("## %s\n\n", serverTitles[r.kind])
	fmt.Println("| operation | clients | ops/s | p50 ms | p99 ms | errors | ÷ leased floor p50 | p99 | ÷ kv floor p50 | p99 | ÷ crash-safe floor p50 | p99 |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	byOp := map[string]map[int]*cell{}
	for _, c := range r.cells {
		if byOp[c.op.id] == nil {
			byOp[c.op.id] = map[int]*cell{}
		}
		byOp[c.op.id][c.clients] = c
	}
	for _, n := range opts.clients {
		for _, c := range r.cells {
			if c.clients != n {
				continue
			}
			var leased, kv, safe [2]string
			if up := byOp[c.op.upstream][n]; up != nil {
				floor, kvRead := byOp["floor"][n], byOp["kv-read"][n]
				leased = ratios(c.ops, floor.ops, up.ops)
				kv = ratios(c.ops, kvRead.ops, up.ops)
				if s := byOp["floor-safe"][n]; s != nil {
					safe = ratios(c.ops, s.ops, nil)
				}
			}
			fmt.Printf("| %s | %d | %.1f | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", c.op.label, n, c.throughput(),
				ms(percentile(c.ops, 50)), ms(percentile(c.ops, 99)), c.errors, leased[0], leased[1], kv[0], kv[1], safe[0], safe[1])
			if c.op.cleanup == "" {
				continue
			}
			leased, safe = [2]string{}, [2]string{}
			if up := byOp[c.op.upstream][n]; up != nil {
				leased = ratios(c.cleanup, byOp["floor"][n].cleanup, up.cleanup)
				if s := byOp["floor-safe"][n]; s != nil {
					safe = ratios(c.cleanup, s.cleanup, nil)
				}
			}
			fmt.Printf("| ↳ %s | %d | | %s | %s | | %s | %s | | | %s | %s |\n", c.op.cleanup, n,
				ms(percentile(c.cleanup, 50)), ms(percentile(c.cleanup, 99)), leased[0], leased[1], safe[0], safe[1])
		}
	}
	fmt.Println()

	fmt.Println("| memory (RSS) | engine plugin | Vault |")
	fmt.Println("|---|--:|--:|")
	fmt.Printf("| idle, after set-up and warm-up | %s | %s |\n", mb(r.idle.plugin), mb(r.idle.vault))
	if r.peak.clients > 0 {
		fmt.Printf("| peak under %d clients (sampled every 50 ms) | %s | %s |\n", r.peak.clients, mb(r.peak.plugin), mb(r.peak.vault))
	}
	if e := r.expiry; e != nil {
		fmt.Printf("| with %d live leases | %s | %s |\n", e.leases, mb(e.withLeases.plugin), mb(e.withLeases.vault))
	}
	fmt.Println()
	if e := r.expiry; e != nil {
		e.print()
	}
}

// ratios formats op ÷ (a + b) at p50 and p99 (b nil: op ÷ a), or blanks
// when a figure is missing.
func ratios(op, a, b []time.Duration) [2]string {
	var out [2]string
	for i, p := range []float64{50, 99} {
		x, y, z := percentile(op, p), percentile(a, p), time.Duration(0)
		if b != nil {
			z = percentile(b, p)
		}
		if x < 0 || y < 0 || z < 0 {
			continue
		}
		out[i] = fmt.Sprintf("%.2f", float64(x)/float64(y+z))
	}
	return out
}

func (e *expiryReport) print() {
	fmt.Printf("Mass expiry: %d leases of a service account's application keys, TTL %s, issued by %d clients in %s;\n",
		e.leases, e.ttl, e.clients, e.issue.Round(100*time.Millisecond))
	fmt.Printf("from then on Datadog allowed %d application key calls per second.\n\n", e.limit)
	fmt.Println("| mass expiry | figure |")
	fmt.Println("|---|--:|")
	fmt.Printf("| spread of the expiries (issue window) | %s |\n", e.issueWindow.Round(100*time.Millisecond))
	fmt.Printf("| bound: %d deletions at %d per second | %s |\n", e.leases, e.limit, e.bound().Round(100*time.Millisecond))
	fmt.Printf("| first expiry → no key of the engine left in Datadog | %s |\n", since(e.cleared))
	if e.cleared >= 0 {
		fmt.Printf("| ÷ bound | %.2f |\n", e.cleared.Seconds()/e.bound().Seconds())
	}
	fmt.Printf("| first expiry → no lease left in Vault | %s |\n", since(e.leasesGone))
	fmt.Printf("| Datadog 429 answers | %d |\n", e.refused)
	fmt.Printf("| irrevocable leases | %d |\n", e.irrevocable)
	if e.lateStart > 0 {
		fmt.Printf("| leases already expiring when the rate limit was set (raise -lease-ttl) | %s |\n", e.lateStart.Round(100*time.Millisecond))
	}
	fmt.Println()

	if e.storage == nil {
		return
	}
	fmt.Printf("Storage per lease (sys/raw, %d live leases; an entry's size is its key, its value as stored and %d bytes of encryption):\n\n",
		e.leases, barrierOverhead)
	fmt.Println("| storage | entries per lease | bytes per lease |")
	fmt.Println("|---|--:|--:|")
	groups := make([]string, 0, len(e.storage.entries))
	for g := range e.storage.entries {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	var entries int
	var bytes int64
	for _, g := range groups {
		n, b := e.storage.entries[g], e.storage.bytes[g]
		entries += n
		bytes += b
		fmt.Printf("| %s | %.2f | %.0f |\n", g, float64(n)/float64(e.leases), float64(b)/float64(e.leases))
	}
	fmt.Printf("| total | %.2f | %.0f |\n\n", float64(entries)/float64(e.leases), float64(bytes)/float64(e.leases))
}

func since(d time.Duration) string {
	if d < 0 {
		return "not reached"
	}
	return d.Round(100 * time.Millisecond).String()
}

func ms(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

func mb(n int64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
