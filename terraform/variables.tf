variable "project_id" {
  description = "The Google Cloud project that holds everything."
  type        = string
}

variable "location" {
  description = "Where the lake bucket and both BigQuery datasets live (a region or multi-region). Set the same value as CRYPTOLYTICS_BIGQUERY_LOCATION."
  type        = string
  default     = "europe-west6"
}

variable "region" {
  description = "Default region of the provider."
  type        = string
  default     = "europe-west6"
}

variable "lake_bucket" {
  description = "Name of the raw-lake bucket (globally unique). CRYPTOLYTICS_LAKE_URL becomes gs://<lake_bucket>/lake."
  type        = string
}

variable "staging_dataset" {
  description = "Dataset of the raw table and the staging models."
  type        = string
  default     = "stg_coins_dataset"
}

variable "prod_dataset" {
  description = "Dataset of the dimension, fact and mart models the app reads."
  type        = string
  default     = "prod_coins_dataset"
}

variable "nearline_after_days" {
  description = "Raw snapshots move to NEARLINE after this many days (read only by a reload)."
  type        = number
  default     = 30
}

variable "archive_after_days" {
  description = "Raw snapshots move to ARCHIVE after this many days. Nothing is ever deleted: the lake is the history."
  type        = number
  default     = 365
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "cryptolytics" }
}
