variable "mount_path" {
  description = "Path of the Datadog secrets engine. make dev already has one at datadog/; this is another."
  type        = string
  default     = "datadog-tf"
}

# The engine's own Datadog keys. Ephemeral: Terraform keeps them out of its
# state and of saved plans, and accepts them only where nothing is stored.
variable "datadog_api_key" {
  description = "API key of the Datadog organisation (TF_VAR_datadog_api_key)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "datadog_app_key" {
  description = "Application key of the identity the engine acts as (TF_VAR_datadog_app_key)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "datadog_keys_version" {
  description = "Change it to send datadog_api_key and datadog_app_key again; they are sent only when the mount is created otherwise."
  type        = number
  default     = 1
}

variable "datadog_site" {
  description = "Datadog site, such as datadoghq.com or datadoghq.eu."
  type        = string
  default     = "datadoghq.com"
}

variable "datadog_api_url" {
  description = "Base URL of the Datadog API when it is not the site's (the emulator of make dev); empty for the site's."
  type        = string
  default     = ""
}
