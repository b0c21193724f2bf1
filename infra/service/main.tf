# The service's home on this machine: one directory per environment.
#
# Only the builtin `terraform_data` resource is used, so `init` needs no
# provider download and the module works offline with OpenTofu or Terraform.
# The directory is created by a create-time provisioner and removed by a
# destroy-time one that reads the path back from the resource's own state
# (`self.input`), so destroy works even if the variables are gone.

terraform {
  required_version = ">= 1.4"
}

variable "environment" {
  description = "The environment's name (the reconciler passes {{ environment.name }})."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.environment))
    error_message = "environment must be a reconciler environment name."
  }
}

variable "port" {
  description = "The TCP port the service listens on, on 127.0.0.1."
  type        = number

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be an integer between 1024 and 65535."
  }
}

variable "root" {
  description = <<-EOT
    Absolute directory to hold the service. Empty (the default): the
    environment's data directory, i.e. the part of the working directory
    before its last `/tofu` component (the reconciler runs this module in
    <data>/<environment>/tofu/...), plus `/service`; outside such a
    directory, `<working directory>/service`.
  EOT
  type        = string
  default     = ""

  validation {
    condition     = var.root == "" || startswith(var.root, "/")
    error_message = "root must be an absolute path, or empty for the default."
  }
}

locals {
  cwd         = abspath(path.cwd)
  env_data    = try(regex("^(.*)/tofu(?:/.*)?$", local.cwd)[0], local.cwd)
  service_dir = var.root != "" ? trimsuffix(var.root, "/") : "${local.env_data}/service"
}

resource "terraform_data" "service" {
  input = {
    environment = var.environment
    dir         = local.service_dir
    port        = var.port
  }

  # Paths are passed through the environment, never spliced into the command.
  provisioner "local-exec" {
    command = <<-EOT
      set -eu
      mkdir -p "$SERVICE_DIR/www" "$SERVICE_DIR/run" "$SERVICE_DIR/log"
      printf '%s\n' "$SERVICE_ENVIRONMENT" > "$SERVICE_DIR/.reconciler-service"
    EOT
    environment = {
      SERVICE_DIR         = local.service_dir
      SERVICE_ENVIRONMENT = var.environment
    }
  }

  # Removes only a directory this module created (it holds the marker file).
  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      set -eu
      case "$SERVICE_DIR" in
        ""|/) echo "refusing to remove '$SERVICE_DIR'" >&2; exit 1 ;;
      esac
      if [ -f "$SERVICE_DIR/.reconciler-service" ]; then
        rm -rf -- "$SERVICE_DIR"
        echo "removed $SERVICE_DIR"
      elif [ -e "$SERVICE_DIR" ]; then
        echo "left $SERVICE_DIR in place: it has no .reconciler-service marker" >&2
      fi
    EOT
    environment = {
      SERVICE_DIR = self.input.dir
    }
  }
}

output "service_dir" {
  description = "Absolute path of the service's directory."
  value       = terraform_data.service.output.dir
}

output "port" {
  description = "The port the service listens on."
  value       = terraform_data.service.output.port
}

output "url" {
  description = "The service's base URL."
  value       = "http://127.0.0.1:${terraform_data.service.output.port}"
}
