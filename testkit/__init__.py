"""What tests/ and bench/ share (neither imports the other): a built warehouse without the
Prefect engine, the warehouse compared with the lake, the tick that SIGKILLs itself, the
app's page queries, the GCS and BigQuery emulators, and which partitions a BigQuery
statement reads."""
