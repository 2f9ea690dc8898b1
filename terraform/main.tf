# Cryptolytics on Google Cloud: the lake bucket, the two BigQuery datasets and two service
# accounts with least privilege (the pipeline writes, the app only reads). No key is created
# here: use the runtime's attached service account or workload identity, or create a key out of
# band (README, "Cloud target") so it never lands in Terraform state.

locals {
  apis = toset([
    "bigquery.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis
  project  = var.project_id
  service  = each.value

  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false
}

# --- The raw lake -------------------------------------------------------------------------

resource "google_storage_bucket" "lake" {
  # checkov:skip=CKV_GCP_62: access is audited with Cloud Audit Logs (data access logs on the project), not legacy usage-log buckets, which would need a bucket of their own.
  name     = var.lake_bucket
  project  = var.project_id
  location = var.location
  labels   = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false # raw history is never thrown away with the stack

  # Snapshots are written once; versioning keeps the original should anything overwrite or
  # delete one, and soft delete keeps even a removed version restorable for a while.
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  # Staged load files are derived copies (rebuilt from raw/ whenever needed): expire them,
  # and the versions their rewrites leave.
  lifecycle_rule {
    condition {
      age            = var.staged_expire_days
      matches_prefix = ["${var.lake_prefix}staged/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      matches_prefix             = ["${var.lake_prefix}staged/"]
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Older raw snapshots move to colder, cheaper classes; no rule deletes one.
  lifecycle_rule {
    condition {
      age                   = var.nearline_after_days
      matches_storage_class = ["STANDARD"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      age                   = var.archive_after_days
      matches_storage_class = ["NEARLINE"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "ARCHIVE"
    }
  }

  depends_on = [google_project_service.apis]
}

# --- The warehouse ------------------------------------------------------------------------

resource "google_bigquery_dataset" "staging" {
  # checkov:skip=CKV_GCP_81: encrypted at rest with Google-managed keys; a CMEK key ring is the user's to own and rotate.
  project     = var.project_id
  dataset_id  = var.staging_dataset
  location    = var.location
  description = "Cryptolytics raw snapshots (loaded from the lake) and staging models."
  labels      = var.labels

  delete_contents_on_destroy = false
  depends_on                 = [google_project_service.apis]
}

resource "google_bigquery_dataset" "prod" {
  # checkov:skip=CKV_GCP_81: encrypted at rest with Google-managed keys; a CMEK key ring is the user's to own and rotate.
  project     = var.project_id
  dataset_id  = var.prod_dataset
  location    = var.location
  description = "Cryptolytics dimension, fact and mart models: the full history the app reads."
  labels      = var.labels

  delete_contents_on_destroy = false
  depends_on                 = [google_project_service.apis]
}

# --- Identities ---------------------------------------------------------------------------

resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "cryptolytics-pipeline"
  display_name = "Cryptolytics pipeline (Prefect worker): writes the lake and the warehouse"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "app" {
  project      = var.project_id
  account_id   = "cryptolytics-app"
  display_name = "Cryptolytics analyst app: reads the prod dataset"
  depends_on   = [google_project_service.apis]
}

# The pipeline: objects in the lake bucket only (not the bucket's own settings or IAM).
# It creates and reads objects anywhere in the bucket, but cannot delete or overwrite one
# (both need storage.objects.delete), except where the design needs it: moving a refused
# file out of raw/ into quarantine/ (after the copy is there) and rewriting staged/ copies.
# quarantine/ and everything else it cannot touch once written.
resource "google_storage_bucket_iam_member" "pipeline_lake_read" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_lake_create" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_lake_move" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.pipeline.email}"

  condition {
    title       = "raw-and-staged-only"
    description = "Delete only in raw/ (dead-letter moves; versioning keeps the original) and staged/ (derived load files)."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${var.lake_bucket}/objects/${var.lake_prefix}raw/\") || resource.name.startsWith(\"projects/_/buckets/${var.lake_bucket}/objects/${var.lake_prefix}staged/\")"
  }
}

# The pipeline: tables in the two datasets only.
resource "google_bigquery_dataset_iam_member" "pipeline_staging" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.staging.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_bigquery_dataset_iam_member" "pipeline_prod" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.prod.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# The app: read the prod dataset only.
resource "google_bigquery_dataset_iam_member" "app_prod" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.prod.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.app.email}"
}

# Both run query and load jobs, which BigQuery grants per project (it grants no data).
resource "google_project_iam_member" "job_user" {
  for_each = {
    pipeline = google_service_account.pipeline.email
    app      = google_service_account.app.email
  }
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${each.value}"
}
