# Names only: no key, token or other secret is ever an output.

output "lake_url" {
  description = "CRYPTOLYTICS_LAKE_URL for the cloud target."
  value       = "gs://${google_storage_bucket.lake.name}/lake"
}

output "staging_dataset" {
  description = "CRYPTOLYTICS_BIGQUERY_STAGING_DATASET."
  value       = google_bigquery_dataset.staging.dataset_id
}

output "prod_dataset" {
  description = "CRYPTOLYTICS_BIGQUERY_PROD_DATASET."
  value       = google_bigquery_dataset.prod.dataset_id
}

output "location" {
  description = "CRYPTOLYTICS_BIGQUERY_LOCATION: pass it to every BigQuery job."
  value       = var.location
}

output "pipeline_service_account" {
  description = "Run the Prefect worker as this account (attached, or with workload identity)."
  value       = google_service_account.pipeline.email
}

output "app_service_account" {
  description = "Run the analyst app as this account (read-only on the prod dataset)."
  value       = google_service_account.app.email
}
