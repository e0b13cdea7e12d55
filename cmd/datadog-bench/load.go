package main

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// worker is one concurrent client: a Vault client and a direct Datadog
// client of its own, each with its own keep-alive connections.
type worker struct {
	id     int
	vault  *api.Client
	direct *direct
}

// timing is one cycle's: the operation measured, and the clean-up that
// undoes it (a lease revocation, a Datadog deletion), timed apart.
type timing struct {
	op, cleanup time.Duration
}

// cycle runs one operation (and its clean-up, if it has one) as a worker.
type cycle func(w *worker) (timing, error)

// benchOp is an operation measured at every concurrency.
type benchOp struct {
	id      string
	label   string
	cleanup string // label of the clean-up row; "" when there is none
	// upstream is, for creds reads, the id of the direct Datadog
	// operation that the engine performs for them.
	upstream string
	run      cycle
}

// cell is the result of running one operation with a number of clients.
type cell struct {
	op      *benchOp
	clients int
	elapsed time.Duration
	ops     []time.Duration // of successful cycles only
	cleanup []time.Duration
	errors  int
	lastErr error
}

func (c *cell) throughput() float64 {
	return float64(len(c.ops)) / c.elapsed.Seconds()
}

// runCell has clients workers run op back to back for d, and collects
// their timings. A worker that fails ten times in a row stops: the cell
// reports the errors rather than a figure.
func runCell(workers []*worker, clients int, d time.Duration, op *benchOp) *cell {
	c := &cell{op: op, clients: clients}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, w := range workers[:clients] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ops, cleanups []time.Duration
			failures := 0
			for time.Now().Before(deadline) && failures < 10 {
				t, err := op.run(w)
				if err != nil {
					failures++
					mu.Lock()
					c.errors++
					c.lastErr = err
					mu.Unlock()
					continue
				}
				failures = 0
				ops = append(ops, t.op)
				cleanups = append(cleanups, t.cleanup)
			}
			mu.Lock()
			c.ops = append(c.ops, ops...)
			c.cleanup = append(c.cleanup, cleanups...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	c.elapsed = time.Since(start)
	slices.Sort(c.ops)
	slices.Sort(c.cleanup)
	return c
}

// percentile is the nearest-rank percentile of sorted durations, or -1
// when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return -1
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// peakSampler records the largest resident set size of the plugin and of
// Vault, sampled every 50 ms until stopped.
type peakSampler struct {
	stop chan struct{}
	done chan memory
}

func samplePeak(pluginPID, vaultPID int) *peakSampler {
	s := &peakSampler{stop: make(chan struct{}), done: make(chan memory, 1)}
	go func() {
		var peak memory
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := rss(pluginPID); err == nil {
				peak.plugin = max(peak.plugin, n)
			}
			if n, err := rss(vaultPID); err == nil {
				peak.vault = max(peak.vault, n)
			}
			select {
			case <-s.stop:
				s.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peak stops the sampler and returns the largest sizes seen (0: none).
func (s *peakSampler) peak() memory {
	close(s.stop)
	return <-s.done
}
