package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

var (
	chaosCycles = flag.Int("chaos.cycles", 100, "creds cycles (issue, use, revoke or expire) TestChaos runs; make chaos runs 500")
	chaosSeed   = flag.Uint64("chaos.seed", 0, "seed of TestChaos's draws (Datadog's faults, each lease's fate, when the plugin dies); 0 picks one")
)

const (
	chaosWorkers     = 4
	chaosPluginKills = 5
)

// chaosOperations are every create and delete the engine sends Datadog.
var chaosOperations = []string{
	"CreateCurrentUserApplicationKey", "CreateServiceAccountApplicationKey", "CreateAPIKey",
	"CreatePersonalAccessToken", "CreateServiceAccountAccessToken",
	"DeleteCurrentUserApplicationKey", "DeleteServiceAccountApplicationKey", "DeleteAPIKey",
	"RevokePersonalAccessToken", "RevokeServiceAccountAccessToken", "DeleteApplicationKey",
}

// chaosFaults are the faults of one operation, each with the share of its
// calls it should hit: 10% 5xx, 5% 429, 5% slower than the engine's 2 s
// request_timeout, 2% applied but the connection dropped, 2% answered 503
// and applied 2 to 5 s later.
func chaosFaults(operation string) []emulator.Fault {
	shares := []struct {
		fault emulator.Fault
		share float64
	}{
		{emulator.Fault{Action: emulator.FaultError, Status: 500}, 0.10 / 3},
		{emulator.Fault{Action: emulator.FaultError, Status: 502}, 0.10 / 3},
		{emulator.Fault{Action: emulator.FaultError, Status: 503}, 0.10 / 3},
		{emulator.Fault{Action: emulator.FaultRateLimit}, 0.05},
		{emulator.Fault{Action: emulator.FaultLatency, Latency: 3 * time.Second}, 0.05},
		{emulator.Fault{Action: emulator.FaultCommitThenReset}, 0.02},
		{emulator.Fault{Action: emulator.FaultDelayedCommit, Delay: 2 * time.Second}, 0.02 / 4},
		{emulator.Fault{Action: emulator.FaultDelayedCommit, Delay: 3 * time.Second}, 0.02 / 4},
		{emulator.Fault{Action: emulator.FaultDelayedCommit, Delay: 4 * time.Second}, 0.02 / 4},
		{emulator.Fault{Action: emulator.FaultDelayedCommit, Delay: 5 * time.Second}, 0.02 / 4},
	}
	// The emulator tries faults in order, each with its own draw: a
	// fault's probability is its share of the calls the ones before it
	// left alone.
	var faults []emulator.Fault
	left := 1.0
	for _, s := range shares {
		f := s.fault
		f.Operation, f.Probability = operation, s.share/left
		left -= s.share
		faults = append(faults, f)
	}
	return faults
}

// TestChaos issues, uses and revokes (or lets expire) every kind of
// credential from several workers against a real Vault server with
// persistent storage, while Datadog fails creates and deletions at random,
// the plugin process is SIGKILLed (once in the middle of a create) and
// Vault restarts. However a request ended, every credential issued must
// work, and once the dust settles no key may be left in Datadog and no
// lease may be irrevocable. make chaos runs it long (-chaos.cycles).
func TestChaos(t *testing.T) {
	t.Parallel()
	began := time.Now()
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos: %d cycles, seed %d (repeat with -chaos.seed=%d)", *chaosCycles, seed, seed)

	// Limits as generous as Datadog's, so that every answer, the injected
	// 429s included, carries the headers Datadog sends (a 429 without a
	// configured limit claims one call per second).
	generous := emulator.RateLimit{Limit: 100, Period: time.Second}
	dd := startDatadogWith(t, emulator.Options{FaultSeed: seed, RateLimits: map[string]emulator.RateLimit{
		"application_keys": generous, "api_keys": generous, "access_tokens": generous,
	}})
	cluster := startCluster(t, 1)
	node := cluster.nodes[0]
	client := node.rootClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configureShortTimeout(t, client, mount, dd)
	serviceAccount := dd.serviceAccount(t)
	for _, use := range credentialUses {
		// A short max_ttl bounds how long a key can outlive a lease Vault
		// never recorded (the plugin died between the engine's record of
		// it and Vault's): tidy deletes it once that lease would have ended.
		for fate, ttl := range map[string]string{"revoke": "1m", "expire": "10s"} {
			role := map[string]any{"credential_type": use.kind, "ttl": ttl, "max_ttl": "1m"}
			if use.kind != "api_key" {
				role["scopes"] = "dashboards_read"
			}
			if strings.HasPrefix(use.kind, "service_") {
				role["service_account_id"] = serviceAccount
			}
			// Roles with API keys share one (the default) with windows
			// short enough to change, and crash, during the run; the
			// leases left to expire get one each.
			if !strings.HasSuffix(use.kind, "access_token") {
				if fate == "revoke" {
					role["api_key_rotation"] = "10s"
				} else {
					role["api_key_mode"] = "dynamic"
				}
			}
			write(t, client, mount+"/roles/"+use.kind+"-"+fate, role)
		}
	}
	for _, op := range chaosOperations {
		for _, f := range chaosFaults(op) {
			if _, err := dd.AddFault(f); err != nil {
				t.Fatal(err)
			}
		}
	}

	cyclesBegan := time.Now()
	run := &chaosRun{dd: dd, cluster: cluster, client: client, mount: mount, cycles: *chaosCycles}
	ctx, cancel := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	// Registered last, so run first: no worker outlives the test.
	t.Cleanup(func() { cancel(); workers.Wait() })
	for w := range chaosWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			run.work(ctx, rand.New(rand.NewPCG(seed, uint64(w+1))))
		}()
	}

	// Disasters strike after as many cycles as drawn: the plugin dies 5
	// times, once in the middle of a create, and Vault restarts halfway.
	draw := rand.New(rand.NewPCG(seed, 0))
	at := func(from, to float64) int { return int(float64(run.cycles) * (from + (to-from)*draw.Float64())) }
	type disaster struct {
		afterCycles int
		strike      func()
	}
	disasters := []disaster{
		{at(0.1, 0.3), func() { run.killPluginMidCreate(t, node) }},
		{run.cycles / 2, func() { run.restartVault(t, node) }},
	}
	for range chaosPluginKills - 1 {
		disasters = append(disasters, disaster{at(0.1, 0.9), func() { run.killPlugin(t, node, time.Minute, "") }})
	}
	slices.SortStableFunc(disasters, func(a, b disaster) int { return a.afterCycles - b.afterCycles })
	for _, d := range disasters {
		run.waitCycles(d.afterCycles)
		d.strike()
	}
	workers.Wait()
	chaosEnded := time.Now()
	t.Logf("%d cycles took %s", run.cycles, chaosEnded.Sub(cyclesBegan).Round(time.Second))

	// Datadog heals; every lease ends; pending WAL entries are rolled back.
	dd.ClearFaults()
	for deadline := time.Now().Add(30 * time.Second); dd.PendingCommits() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d delayed commits still pending 30s after the faults were cleared", dd.PendingCommits())
		}
	}
	// Leases left to expire end by themselves: Vault retries, with
	// back-off, revocations that failed while Datadog was failing.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		n := chaosLeases(t, client, mount, "expire")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("%d expired leases still being revoked by Vault a minute after the chaos", n)
			break
		}
	}
	irrevocable := irrevocableLeases(t, client, mount)
	// What the workers could not revoke (Vault or Datadog failing).
	if err := client.Sys().RevokePrefix(mount + "/creds/"); err != nil {
		noteError(err)
		t.Errorf("revoking the remaining leases with Datadog healthy: %v", err)
	}
	// The last WAL entries are due 46 s after their request began, and
	// Vault's rollback runs every 60 s.
	for deadline := chaosEnded.Add(150 * time.Second); len(dd.liveVaultKeys()) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
	}
	beforeTidy := dd.liveVaultKeys()
	if len(beforeTidy) > 0 {
		t.Logf("%d keys of the engine still in Datadog %s after the chaos ended, before tidy: %+v", len(beforeTidy), time.Since(chaosEnded).Round(time.Second), beforeTidy)
	}
	// Every lease has ended by now (max_ttl 1m): tidy may take what any
	// lease still holds.
	tidied := runTidy(t, client, mount, "0s")
	left := dd.liveVaultKeys()
	if len(left) > 0 {
		t.Logf("Vault holds %d leases of the engine", chaosLeases(t, client, mount, "expire", "revoke"))
	}
	for _, k := range left {
		t.Errorf("key %s (%s %s, created %s) is left in Datadog; %s", k.ID, k.Kind, k.Name, k.CreatedAt.Format(time.RFC3339Nano), engineRecordOf(client, mount, k))
	}

	figures := []struct {
		name  string
		value any
		must0 bool
	}{
		{"cycles", run.cycles, false},
		{"seed", seed, false},
		{"credentials issued", run.issued.Load(), false},
		{"failed issues", run.failedIssues(), false},
		{"failed revocations (ended later)", run.failedRevokes.Load(), false},
		{"credentials that did not work when used", run.didNotWork.Load(), true},
		{"credentials that worked after revocation", run.workedAfterRevoke.Load(), true},
		{"keys left in Datadog", len(left), true},
		{"irrevocable leases", irrevocable, true},
		{"keys tidy had to remove", tidied, false},
		{"plugin SIGKILLs", run.kills, false},
		{"Vault restarts", run.restarts, false},
		{"duration", time.Since(began).Round(time.Second), false},
	}
	var table strings.Builder
	table.WriteString("| chaos | |\n|---|---:|\n")
	for _, f := range figures {
		fmt.Fprintf(&table, "| %s | %v |\n", f.name, f.value)
		if f.must0 && fmt.Sprint(f.value) != "0" {
			t.Errorf("%s: %v, want 0", f.name, f.value)
		}
	}
	for _, s := range run.samples {
		t.Log(s)
	}
	for _, p := range run.problems {
		t.Error(p)
	}
	t.Logf("\n%s", table.String())
	fmt.Print(table.String())
	if run.kills != chaosPluginKills || run.restarts != 1 {
		t.Errorf("%d plugin kills and %d Vault restarts happened, want %d and 1", run.kills, run.restarts, chaosPluginKills)
	}
}

// engineRecordOf tells what the engine's storage holds of the request that
// created a key: its record (credentials/<id>, the last 16 characters of
// the key's name), read through sys/raw.
func engineRecordOf(client *api.Client, mount string, k emulator.Key) string {
	mountInfo, err := client.Sys().GetMount(mount)
	if err != nil || len(k.Name) < 16 {
		return fmt.Sprintf("its engine record cannot be read (%v)", err)
	}
	id := k.Name[len(k.Name)-16:]
	rec, err := client.Logical().Read("sys/raw/logical/" + mountInfo.UUID + "/credentials/" + id)
	switch {
	case err != nil:
		return fmt.Sprintf("its engine record cannot be read (%v)", err)
	case rec == nil:
		return "the engine has no record credentials/" + id
	}
	return fmt.Sprintf("the engine's record credentials/%s: %v", id, rec.Data["value"])
}

// chaosLeases counts the leases Vault holds of TestChaos's roles of the
// given fates.
func chaosLeases(t *testing.T, client *api.Client, mount string, fates ...string) int {
	t.Helper()
	n := 0
	for _, use := range credentialUses {
		for _, fate := range fates {
			prefix := mount + "/creds/" + use.kind + "-" + fate + "/"
			list, err := client.Logical().List("sys/leases/lookup/" + prefix)
			if err != nil {
				t.Fatalf("listing leases under %s: %v", prefix, err)
			}
			if list != nil {
				keys, _ := list.Data["keys"].([]any)
				n += len(keys)
			}
		}
	}
	return n
}

// chaosRun is the state shared by TestChaos's workers and its disasters.
type chaosRun struct {
	dd      *datadog
	cluster *raftCluster
	client  *api.Client
	mount   string
	cycles  int

	next, done                    atomic.Int64 // cycles started, finished
	issued, failedRevokes         atomic.Int64
	didNotWork, workedAfterRevoke atomic.Int64
	kills, restarts               int // by the test goroutine only
	pause                         pause

	mu            sync.Mutex // guards the fields below
	failedByCause map[string]int
	problems      []string // failures of the test
	samples       []string // examples of what went wrong, for the log
}

// work runs cycles until they are all started.
func (r *chaosRun) work(ctx context.Context, draw *rand.Rand) {
	for {
		r.pause.wait(ctx)
		n := int(r.next.Add(1) - 1)
		if n >= r.cycles || ctx.Err() != nil {
			return
		}
		r.cycle(ctx, credentialUses[n%len(credentialUses)], draw.IntN(3) == 0)
		r.done.Add(1)
	}
}

// cycle issues one credential, uses it as its consumer would, then revokes
// it (checking it no longer works) or leaves it to expire.
func (r *chaosRun) cycle(ctx context.Context, use credentialUse, expire bool) {
	role := use.kind + "-revoke"
	if expire {
		role = use.kind + "-expire"
	}
	creds, err := r.client.Logical().ReadWithContext(ctx, r.mount+"/creds/"+role)
	if err != nil || creds == nil || creds.LeaseID == "" {
		noteError(err)
		r.failedIssue(role, err)
		return
	}
	noteCreds(creds.Data)
	r.issued.Add(1)
	if status, err := r.dd.use(ctx, use, creds.Data); status != http.StatusOK {
		r.didNotWork.Add(1)
		r.problem("fresh %s %v: GET %s answered HTTP %d (%v)", use.kind, creds.Data[use.idField], use.allowed, status, err)
	}
	if expire {
		return
	}
	if err := r.client.Sys().RevokeWithContext(ctx, creds.LeaseID); err != nil {
		noteError(err)
		r.failedRevokes.Add(1)
		return
	}
	if use.kind == "api_key" {
		// Its role shares one API key between the leases of a window: it
		// works on while other workers' leases hold it; the run's end
		// checks that none outlives its last lease.
		return
	}
	if status, _ := r.dd.use(ctx, use, creds.Data); status == http.StatusOK {
		r.workedAfterRevoke.Add(1)
		r.problem("revoked %s %v still works", use.kind, creds.Data[use.idField])
	}
}

// failedIssue counts a creds read that failed, by cause, and keeps the
// first error of each cause for the log.
func (r *chaosRun) failedIssue(role string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failedByCause == nil {
		r.failedByCause = map[string]int{}
	}
	cause := failureCause(err)
	if r.failedByCause[cause]++; r.failedByCause[cause] == 1 {
		r.samples = append(r.samples, fmt.Sprintf("failed issue of %s (%s): %v", role, cause, err))
	}
}

// failureCause sorts a failed creds read by what failed.
func failureCause(err error) string {
	var respErr *api.ResponseError
	msg := fmt.Sprint(err)
	switch {
	case strings.Contains(msg, "rpc error") || strings.Contains(msg, "plugin is shut down") ||
		strings.Contains(msg, "Unrecognized remote plugin message"): // killed while starting
		return "plugin process died"
	case strings.Contains(msg, "Datadog"):
		return "Datadog failed"
	case errors.As(err, &respErr):
		return fmt.Sprintf("Vault answered %d", respErr.StatusCode)
	}
	return "no answer from Vault"
}

// failedIssues describes the failed issues, by cause.
func (r *chaosRun) failedIssues() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var total int
	var by []string
	for _, cause := range slices.Sorted(maps.Keys(r.failedByCause)) {
		total += r.failedByCause[cause]
		by = append(by, fmt.Sprintf("%s: %d", cause, r.failedByCause[cause]))
	}
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(by, ", "))
}

// problem records a failure of the test.
func (r *chaosRun) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// waitCycles waits until n cycles have finished.
func (r *chaosRun) waitCycles(n int) {
	for r.done.Load() < int64(n) {
		time.Sleep(20 * time.Millisecond)
	}
}

// killPluginMidCreate holds Datadog's next API key create and SIGKILLs
// the plugin while it waits for the answer.
func (r *chaosRun) killPluginMidCreate(t *testing.T, node *raftNode) {
	t.Helper()
	hold, err := r.dd.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultLatency, Latency: 10 * time.Second, Times: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A fault that hit its one call is gone: the create is being held.
	for deadline := time.Now().Add(time.Minute); slices.ContainsFunc(r.dd.Faults(), func(f emulator.Fault) bool { return f.ID == hold.ID }); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) || r.done.Load() >= int64(r.cycles) {
			t.Fatal("no API key create to kill the plugin in")
		}
	}
	r.killPlugin(t, node, time.Second, " while it waited for an API key create")
}

// killPlugin SIGKILLs the node's plugin process and logs when, so that a
// key left behind can be matched with the kill that orphaned it.
func (r *chaosRun) killPlugin(t *testing.T, node *raftNode, timeout time.Duration, when string) {
	t.Helper()
	pid := node.killPlugin(t, timeout)
	r.kills++
	t.Logf("%s: plugin process %d SIGKILLed%s, after %d cycles", time.Now().UTC().Format("15:04:05.000"), pid, when, r.done.Load())
}

// restartVault stops Vault gracefully, in the middle of whatever the
// workers are doing, and starts it again on the same storage; the workers
// wait between cycles until it is unsealed.
func (r *chaosRun) restartVault(t *testing.T, node *raftNode) {
	t.Helper()
	r.pause.begin()
	defer r.pause.end()
	stopped := time.Now()
	node.restart(t)
	// Active means the mounts are set up again: a plugin killed while
	// Vault sets up its mount would leave the mount without a backend
	// until the next restart (Vault skips it), which is Vault's matter.
	r.cluster.activeNode(t, time.Minute)
	r.restarts++
	t.Logf("%s: Vault stopped after %d cycles, active again %s later", stopped.UTC().Format("15:04:05.000"), r.done.Load(), time.Since(stopped).Round(time.Millisecond))
}

// use calls Datadog with a credential as its consumer would and returns
// the HTTP status.
func (d *datadog) use(ctx context.Context, use credentialUse, creds map[string]any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+use.allowed, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range use.auth(creds) {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// pause holds workers between cycles while Vault restarts.
type pause struct {
	mu     sync.Mutex
	paused chan struct{} // closed when the pause ends; nil when not paused
}

func (p *pause) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = make(chan struct{})
}

func (p *pause) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.paused)
	p.paused = nil
}

func (p *pause) wait(ctx context.Context) {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused != nil {
		select {
		case <-paused:
		case <-ctx.Done():
		}
	}
}
