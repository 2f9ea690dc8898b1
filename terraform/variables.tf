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

variable "lake_prefix" {
  description = "The folder of the lake inside the bucket, with a trailing slash: CRYPTOLYTICS_LAKE_URL is gs://<lake_bucket>/<lake_prefix>."
  type        = string
  default     = "lake/"
}

variable "staged_expire_days" {
  description = "Staged load files (gzip NDJSON under <lake_prefix>staged/, derived from the raw files for BigQuery load jobs) are deleted after this many days."
  type        = number
  default     = 7
}

variable "soft_delete_days" {
  description = "A deleted object (a dead letter moved out of raw/, an expired staged file) stays restorable this long."
  type        = number
  default     = 90
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "cryptolytics" }
}
