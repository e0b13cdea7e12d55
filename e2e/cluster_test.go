package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// raftNode is a Vault server started from a configuration file as in
// production, not in dev mode: integrated storage (raft) in its own data
// directory, a plain-HTTP listener and a cluster port on free loopback
// ports, and the suite's plugin directory. Everything it writes (data, log,
// HOME) stays under workDir.
type raftNode struct {
	*vaultServer
	name       string
	configPath string
	unsealKey  string // set once the cluster is initialised
}

// raftCluster is a set of raft nodes initialised together.
type raftCluster struct {
	nodes     []*raftNode
	rootToken string
}

// nodeConfig is a node's configuration. performance_multiplier 1 gives
// raft the production timings (one second to notice a lost leader)
// rather than the five-times-slower development default;
// raw_storage_endpoint lets a failing test show the engine's own records
// (sys/raw, root only).
const nodeConfig = `storage "raft" {
  path                   = %q
  node_id                = %q
  performance_multiplier = 1
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr             = "http://127.0.0.1:%d"
cluster_addr         = "https://127.0.0.1:%d"
plugin_directory     = %q
disable_mlock        = true
raw_storage_endpoint = true
`

// startCluster starts size nodes, initialises the first with a single
// unseal key, joins the others to it, waits until every node is a voter
// (so that the cluster survives losing one), and registers the plugin.
func startCluster(t *testing.T, size int) *raftCluster {
	t.Helper()
	// A directory of its own, also when -count runs the test again.
	dir, err := os.MkdirTemp(workDir, "cluster-"+mountPath(t)+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := &raftCluster{}
	first := startNode(t, dir, "node1")
	c.nodes = append(c.nodes, first)
	c.rootToken, first.unsealKey = first.initialize(t)
	first.unseal(t)
	c.activeNode(t, time.Minute) // the others join through it
	for i := 2; i <= size; i++ {
		n := startNode(t, dir, fmt.Sprintf("node%d", i))
		n.token, n.unsealKey = c.rootToken, first.unsealKey
		if out, err := n.cli("operator", "raft", "join", first.addr); err != nil {
			t.Fatalf("joining %s to %s: %v\n%s", n.name, first.name, err, out)
		}
		n.unseal(t)
		c.nodes = append(c.nodes, n)
	}
	c.waitVoters(t, size, time.Minute)
	c.activeNode(t, time.Minute).registerPlugin(t)
	return c
}

// startNode writes a node's configuration and starts it, to be stopped
// when the test ends. The server is up but not yet initialised.
func startNode(t *testing.T, clusterDir, name string) *raftNode {
	t.Helper()
	dir := filepath.Join(clusterDir, name)
	for _, sub := range []string{"data", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := findVault()
	if err != nil {
		t.Fatal(err)
	}
	port, clusterPort := requireFreePort(t), requireFreePort(t)
	n := &raftNode{
		vaultServer: &vaultServer{
			bin:     bin,
			addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
			logPath: filepath.Join(dir, "vault.log"),
			home:    filepath.Join(dir, "home"),
		},
		name:       name,
		configPath: filepath.Join(dir, "vault.hcl"),
	}
	config := fmt.Sprintf(nodeConfig, filepath.Join(dir, "data"), name, port, clusterPort, port, clusterPort, pluginDir)
	if err := os.WriteFile(n.configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.shutdown()
		if t.Failed() {
			printLogTail(n.logPath) // kept in full: TestMain keeps workDir when a test fails
		}
	})
	n.start(t)
	return n
}

func requireFreePort(t *testing.T) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// start runs the server on its configuration and waits until it answers,
// sealed or not.
func (n *raftNode) start(t *testing.T) {
	t.Helper()
	if err := n.launch("server", "-config="+n.configPath, "-log-level=trace"); err != nil {
		t.Fatal(err)
	}
	if err := n.waitHealth(time.Minute, "up", func(*api.HealthResponse) bool { return true }); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
}

// initialize initialises the node with one unseal key and returns the
// root token and that key.
func (n *raftNode) initialize(t *testing.T) (rootToken, unsealKey string) {
	t.Helper()
	out, err := n.cli("operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if err != nil {
		t.Fatalf("initialising %s: %v\n%s", n.name, err, out)
	}
	var init struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &init); err != nil || len(init.Keys) != 1 || init.RootToken == "" {
		t.Fatalf("vault operator init on %s printed no key and root token (%v): %s", n.name, err, out)
	}
	n.token = init.RootToken
	return init.RootToken, init.Keys[0]
}

// unseal unseals the node and waits until it serves, as the active node
// or as a standby.
func (n *raftNode) unseal(t *testing.T) {
	t.Helper()
	if out, err := n.cli("operator", "unseal", n.unsealKey); err != nil {
		t.Fatalf("unsealing %s: %v\n%s", n.name, err, out)
	}
	if err := n.waitHealthy(2 * time.Minute); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
}

// registerPlugin registers the suite's plugin build in the cluster's
// catalog, as an operator would: by checksum and version.
func (n *raftNode) registerPlugin(t *testing.T) {
	t.Helper()
	if out, err := n.cli("plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion, "secret", pluginName); err != nil {
		t.Fatalf("registering the plugin on %s: %v\n%s", n.name, err, out)
	}
}

// rootClient is a root client of this node that does not retry (see
// newClient).
func (n *raftNode) rootClient(t *testing.T) *api.Client {
	t.Helper()
	client, err := n.client()
	if err != nil {
		t.Fatal(err)
	}
	client.SetMaxRetries(0)
	return client
}

// running reports whether the node's server process is alive.
func (n *raftNode) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// restart stops the node gracefully and starts it again on the same data
// directory and ports, unsealed.
func (n *raftNode) restart(t *testing.T) {
	t.Helper()
	n.stop()
	n.start(t)
	n.unseal(t)
}

// kill ends the node at once, as a crash would, with its plugin processes:
// they would otherwise go on with the requests they were serving.
func (n *raftNode) kill(t *testing.T) {
	t.Helper()
	for _, pid := range n.pluginPIDs(t) {
		if err := killIfRunningFrom(pid, pluginDir); err != nil {
			t.Errorf("killing plugin process %d of %s: %v", pid, n.name, err)
		}
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// shutdown stops the node gracefully at the end of the test; plugin
// processes it leaves (if it had to be killed) are killed too.
func (n *raftNode) shutdown() {
	if !n.running() {
		return
	}
	plugins, _ := childrenRunningFrom(n.cmd.Process.Pid, pluginDir)
	n.stop()
	for _, pid := range plugins {
		killIfRunningFrom(pid, pluginDir)
	}
}

// pluginPIDs lists the plugin processes the node runs now.
func (n *raftNode) pluginPIDs(t *testing.T) []int {
	t.Helper()
	pids, err := childrenRunningFrom(n.cmd.Process.Pid, pluginDir)
	if err != nil {
		t.Fatalf("looking for the plugin processes of %s: %v", n.name, err)
	}
	return pids
}

// killPlugin waits until the node runs a plugin process (Vault starts one
// on the mount's first request after the last one died), SIGKILLs it and
// returns its process id.
func (n *raftNode) killPlugin(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if pids := n.pluginPIDs(t); len(pids) > 0 {
			if err := killIfRunningFrom(pids[0], pluginDir); err != nil {
				t.Fatalf("killing plugin process %d of %s: %v", pids[0], n.name, err)
			}
			return pids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s ran no plugin process within %s", n.name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// activeNode waits until one of the running nodes is active (unsealed and
// not a standby) and returns it.
func (c *raftCluster) activeNode(t *testing.T, timeout time.Duration) *raftNode {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, n := range c.nodes {
			if !n.running() {
				continue
			}
			health, err := n.rootClient(t).Sys().Health()
			if err == nil && health.Initialized && !health.Sealed && !health.Standby {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no active node after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// standby returns a running node other than active.
func (c *raftCluster) standby(t *testing.T, active *raftNode) *raftNode {
	t.Helper()
	for _, n := range c.nodes {
		if n != active && n.running() {
			return n
		}
	}
	t.Fatal("no running standby node")
	return nil
}

// waitVoters waits until autopilot has made every node a voter, in a
// healthy cluster.
func (c *raftCluster) waitVoters(t *testing.T, voters int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var state struct {
			Healthy bool     `json:"healthy"`
			Voters  []string `json:"voters"`
		}
		secret, err := c.activeNode(t, timeout).rootClient(t).Logical().Read("sys/storage/raft/autopilot/state")
		if err == nil && secret != nil {
			b, _ := json.Marshal(secret.Data)
			json.Unmarshal(b, &state)
			if state.Healthy && len(state.Voters) == voters {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft cluster not healthy with %d voters after %s: voters %v, error %v", voters, timeout, state.Voters, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
