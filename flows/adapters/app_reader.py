"""What the analyst app reads, and nothing more: the published serving copies (local) or the
prod dataset (cloud), with application default credentials, which on GCP are the app's
read-only service account (terraform/main.tf). No Prefect, no pipeline credentials, no lake:
the app runs with `streamlit run` alone (an import-linter contract keeps Prefect out), so it
has this lookup of its own beside the pipeline's `TARGETS` (which loads Prefect blocks)."""

from __future__ import annotations

from collections.abc import Callable

from flows.adapters.serving import Reader, ServingReader
from flows.core.settings import Settings


def local_reader(settings: Settings) -> Reader:
    return ServingReader(settings.serving_dir.resolve())


def cloud_reader(settings: Settings) -> Reader:
    from flows.adapters.bigquery import BigQueryReader, bigquery_client

    credentials = None  # application default credentials
    if settings.bigquery_api_endpoint is not None:  # an emulator: nothing can reach Google
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return BigQueryReader(
        bigquery_client(settings, credentials),
        settings.bigquery_prod_dataset,
        settings.bigquery_location,
    )


READERS: dict[str, Callable[[Settings], Reader]] = {"local": local_reader, "cloud": cloud_reader}


def open_app_reader(settings: Settings) -> Reader:
    try:
        return READERS[settings.target](settings)
    except KeyError:
        raise ValueError(
            f"CRYPTOLYTICS_TARGET={settings.target!r} has no reader for the app"
        ) from None
