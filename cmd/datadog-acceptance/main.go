// Command datadog-acceptance runs the engine's acceptance suite: end-to-end
// scenarios through a real Vault server against any Datadog — the
// project's emulator by default, a real organisation when DD_API_KEY,
// DD_APP_KEY and DD_SITE are set — and prints a table of the scenarios and
// of the facts the emulator assumes. `make acceptance` runs it.
//
//	datadog-acceptance -vault $(scripts/vault-bin.sh) -plugin bin/plugins/vault-plugin-secrets-datadog -plugin-version v0.1.0-dev
//	datadog-acceptance sweep -run vault-acc-k3x9q2-
//
// The environment: DD_API_KEY, DD_APP_KEY, DD_SITE (a real organisation);
// DD_API_URL (another base URL: a proxy, an emulator); DD_SERVICE_ACCOUNT_ID
// and DD_ACCESS_TOKEN (the service-account and token-root scenarios);
// DD_RECORD=<dir> (write the run's Datadog traffic there, redacted). See the
// README, "Testing against a real Datadog organisation".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/acceptance"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sweep" {
		os.Exit(sweep(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

// defaultStateDir is $ACCEPTANCE_STATE_DIR, or the user's cache
// directory.
func defaultStateDir() string {
	if dir := os.Getenv("ACCEPTANCE_STATE_DIR"); dir != "" {
		return dir
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "vault-plugin-secrets-datadog", "acceptance")
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run(args []string) int {
	fs := flag.NewFlagSet("datadog-acceptance", flag.ContinueOnError)
	opts := acceptance.Options{Log: os.Stderr}
	fs.StringVar(&opts.VaultBin, "vault", os.Getenv("VAULT_BIN"), "the vault binary (default $VAULT_BIN; make acceptance finds or builds one)")
	fs.StringVar(&opts.Plugin, "plugin", filepath.Join("bin", "plugins", "vault-plugin-secrets-datadog"), "the plugin binary (make build)")
	fs.StringVar(&opts.PluginVersion, "plugin-version", "v0.1.0-dev", "the version the plugin was built with")
	fs.StringVar(&opts.StateDir, "state-dir", defaultStateDir(), "where runs keep their journals, for acceptance-sweep (default $ACCEPTANCE_STATE_DIR, or the user's cache directory)")
	fs.StringVar(&opts.WorkDir, "work-dir", "", "Vault's directory (default: a temporary one, removed after a clean run)")
	only := fs.String("only", "", "run only these scenarios (comma-separated names, or prefixes such as creds/); the config scenarios always run")
	skip := fs.String("skip", "", "skip these scenarios (as -only)")
	fs.StringVar(&opts.HoldAfter, "hold-after", "", "after this scenario, wait until interrupted (to test interruption)")
	fs.DurationVar(&opts.LastUseWait, "last-use-wait", 2*time.Minute, "how long to wait for Datadog to report a key's use")
	listScenarios := fs.Bool("list", false, "list the scenarios and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: datadog-acceptance [flags]\n       datadog-acceptance sweep -run <prefix>\n\n"+
			"Against the emulator unless %s, %s and %s are set (optional: %s, %s, %s, %s).\n\n",
			acceptance.EnvAPIKey, acceptance.EnvAppKey, acceptance.EnvSite, acceptance.EnvAPIURL,
			acceptance.EnvServiceAccount, acceptance.EnvAccessToken, acceptance.EnvRecord)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *listScenarios {
		for _, name := range acceptance.ScenarioNames() {
			fmt.Println(name)
		}
		return 0
	}
	opts.Only, opts.Skip = list(*only), list(*skip)
	if opts.VaultBin == "" {
		fmt.Fprintln(os.Stderr, "datadog-acceptance: no vault binary: pass -vault or set VAULT_BIN (make acceptance does)")
		return 2
	}

	// The first Ctrl-C (or SIGTERM) stops the scenarios and cleans up; a
	// second stops the clean-up.
	ctx, interrupt := context.WithCancel(context.Background())
	cleanupCtx, abort := context.WithCancel(context.Background())
	opts.CleanupCtx = cleanupCtx
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		fmt.Fprintln(os.Stderr, "\ninterrupted: cleaning up (interrupt again to stop cleaning up)")
		interrupt()
		<-signals
		fmt.Fprintln(os.Stderr, "\ninterrupted again: clean-up stopped")
		abort()
	}()

	rep, err := acceptance.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "datadog-acceptance:", err)
		if rep != nil && rep.Prefix != "" {
			fmt.Fprintf(os.Stderr, "to delete what the run made: make acceptance-sweep RUN=%s\n", rep.Prefix)
		}
		return 1
	}
	rep.Print(os.Stdout)
	switch {
	case rep.Interrupted:
		return 130
	case !rep.OK():
		return 1
	}
	return 0
}

func sweep(args []string) int {
	fs := flag.NewFlagSet("datadog-acceptance sweep", flag.ContinueOnError)
	runFlag := fs.String("run", "", "the run's prefix (vault-acc-<id>-, as the run printed it) or id")
	stateDir := fs.String("state-dir", defaultStateDir(), "where runs keep their journals")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: datadog-acceptance sweep -run <prefix>\n\n"+
			"Deletes what a run left in the Datadog of %s, %s, %s (and %s): every API key, application key of the user\n"+
			"and of the run's service accounts, access token and service account named with the run's prefix, and the\n"+
			"root keys its mounts' rotations made (named after their marker, from the run's journal).\n\n",
			acceptance.EnvAPIKey, acceptance.EnvAppKey, acceptance.EnvSite, acceptance.EnvAPIURL)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runFlag == "" {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := acceptance.Sweep(ctx, acceptance.SweepOptions{Run: *runFlag, StateDir: *stateDir, Getenv: os.Getenv,
		Log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "datadog-acceptance sweep:", err)
		return 1
	}
	fmt.Printf("sweep of %s: %d objects deleted, none left\n", *runFlag, n)
	return 0
}
