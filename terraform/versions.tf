terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }

  # State stays local by default. For a team, keep it in a bucket of its own (created once by
  # hand, versioned), never in the lake bucket:
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "cryptolytics"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
