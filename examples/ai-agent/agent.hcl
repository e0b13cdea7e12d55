# Vault Agent for one AI agent task: logs in with the AppRole that setup.sh
# made, reads one lease of datadog/creds/ai-agent, and runs the task as a
# child process with DD_API_KEY, DD_APP_KEY and DD_SITE in its environment.
# The child gets no Vault token. Relative paths are relative to the
# directory the agent runs in; Vault's address comes from VAULT_ADDR.

auto_auth {
  method "approle" {
    mount_path = "auth/ai-agents"
    # A secret ID logs in once: when the token reaches its max TTL, logging
    # in again fails, and the agent stops, and with it the task.
    exit_on_err = true
    config = {
      role_id_file_path                   = "role-id"
      secret_id_file_path                 = "secret-id"
      remove_secret_id_file_after_reading = true
    }
  }
}

template_config {
  # Stop (and stop the task) when Vault keeps refusing the credentials, as
  # it does once the agent's token is revoked.
  exit_on_retry_failure = true
}

env_template "DD_API_KEY" {
  contents             = "{{ with secret \"datadog/creds/ai-agent\" }}{{ .Data.api_key }}{{ end }}"
  error_on_missing_key = true
}

env_template "DD_APP_KEY" {
  contents             = "{{ with secret \"datadog/creds/ai-agent\" }}{{ .Data.application_key }}{{ end }}"
  error_on_missing_key = true
}

# With a token role (setup.sh run with SERVICE_ACCOUNT_ID), the task's
# credential is the service access token alone: Datadog takes it as
# DD-APPLICATION-KEY and evaluates no API key. Replace the two templates
# above with:
#
# env_template "DD_APP_KEY" {
#   contents             = "{{ with secret \"datadog/creds/ai-agent\" }}{{ .Data.access_token }}{{ end }}"
#   error_on_missing_key = true
# }

env_template "DD_SITE" {
  contents             = "{{ with secret \"datadog/creds/ai-agent\" }}{{ .Data.site }}{{ end }}"
  error_on_missing_key = true
}

exec {
  # The task. This stand-in says which keys it was given (their last four
  # characters) and works for 10 minutes; put the agent's command here,
  # such as ["my-agent", "--task", "triage"].
  command                   = ["sh", "-c", "echo \"task $$ started with DD_API_KEY ...$(printf %s \"$DD_API_KEY\" | tail -c 4), DD_APP_KEY ...$(printf %s \"$DD_APP_KEY\" | tail -c 4), DD_SITE $DD_SITE\"; exec sleep 600"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}
