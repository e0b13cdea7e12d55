package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

// TestWorkflowLints checks the GitHub Actions workflows with actionlint, as
// a library so that no binary has to be fetched: syntax, expressions, the
// inputs of known actions, and (when shellcheck is installed) run scripts.
// Nothing here runs them; GitHub does.
func TestWorkflowLints(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts := &actionlint.LinterOptions{WorkingDir: root}
	if shellcheck, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = shellcheck
	} else {
		t.Log("no shellcheck on PATH: run scripts are not checked")
	}
	linter, err := actionlint.NewLinter(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := linter.LintRepository(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s:%d:%d: %s [%s]", p.Filepath, p.Line, p.Column, p.Message, p.Kind)
	}
}

// TestWorkflowRunsTestsAndReleases checks that ci.yml does what the README
// says: make test on pull requests and pushes, and make release on v* tags
// only, uploading the archives and both sums files.
func TestWorkflowRunsTestsAndReleases(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var workflow struct {
		On struct {
			PullRequest yaml.Node `yaml:"pull_request"` // null: every pull request
			Push        struct {
				Tags []string `yaml:"tags"`
			} `yaml:"push"`
		} `yaml:"on"`
		Jobs map[string]struct {
			If    string `yaml:"if"`
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &workflow); err != nil {
		t.Fatal(err)
	}
	if workflow.On.PullRequest.Kind == 0 || strings.Join(workflow.On.Push.Tags, ",") != "v*" {
		t.Errorf("ci.yml runs on pull requests: %v, and pushed tags %v; want pull requests, and v* tags", workflow.On.PullRequest.Kind != 0, workflow.On.Push.Tags)
	}
	runs := func(job string) string {
		var all []string
		for _, s := range workflow.Jobs[job].Steps {
			all = append(all, s.Run)
		}
		return strings.Join(all, "\n")
	}
	if !strings.Contains(runs("test"), "make test") || workflow.Jobs["test"].If != "" {
		t.Errorf("ci.yml's test job does not run make test on every event")
	}
	release := runs("release")
	for _, want := range []string{"make release VERSION=", "dist/*.zip", "dist/*SHA256SUMS"} {
		if !strings.Contains(release, want) {
			t.Errorf("ci.yml's release job does not run %q", want)
		}
	}
	if workflow.Jobs["release"].If != "startsWith(github.ref, 'refs/tags/v')" {
		t.Errorf("ci.yml's release job runs if %q, want on v* tags only", workflow.Jobs["release"].If)
	}
}
