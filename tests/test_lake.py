"""The raw lake: layout, write-once, atomic writes, quarantine; any fsspec filesystem."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from flows.adapters.lake import Lake
from flows.core.lake_layout import snapshot_path
from tests.conftest import RECORDED_TIMESTAMP, Emulator

pytestmark = pytest.mark.unit


def test_snapshot_lands_at_its_api_timestamp_partitioned_by_date(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    lake = Lake(str(tmp_path))
    written = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)

    assert written.path == "raw/coincap/assets/date=2025-03-16/1742150071411.json.gz"
    assert written.created
    on_disk = tmp_path / written.path
    assert gzip.decompress(on_disk.read_bytes()) == recorded_assets  # raw bytes, exactly
    assert lake.read(written.path) == recorded_assets
    assert [p.name for p in on_disk.parent.iterdir()] == [on_disk.name]  # no temp file left


def test_writing_the_same_snapshot_twice_is_a_no_op(tmp_path: Path, recorded_assets: bytes) -> None:
    lake = Lake(str(tmp_path))
    first = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)
    mtime = (tmp_path / first.path).stat().st_mtime_ns
    again = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, b"something else")

    assert not again.created
    assert again.path == first.path
    assert (tmp_path / first.path).stat().st_mtime_ns == mtime
    assert lake.read(first.path) == recorded_assets


def test_listing_ignores_temp_files_and_orders_by_time(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    for ts in (1742150071411, 1609459200000, 1742150371411):
        lake.write_snapshot("replay" if ts < 1700000000000 else "coincap", ts, b"{}")
    # what a crash during a write leaves behind
    leftover = tmp_path / "raw/coincap/assets/date=2025-03-16/.1742150671411.json.gz.abc.tmp"
    leftover.write_bytes(b"partial")

    assert lake.list_snapshots() == [
        "raw/replay/assets/date=2021-01-01/1609459200000.json.gz",
        "raw/coincap/assets/date=2025-03-16/1742150071411.json.gz",
        "raw/coincap/assets/date=2025-03-16/1742150371411.json.gz",
    ]
    assert lake.latest_timestamp("coincap") == 1742150371411
    assert lake.latest_timestamp("replay") == 1609459200000


def test_quarantine_keeps_the_body_and_the_reason(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    where = lake.quarantine(
        "coincap", b"<html>oops</html>", "body is not JSON", context={"status": 200}
    )

    assert where.startswith("quarantine/coincap/fetch/assets/date=")
    assert lake.read(where) == b"<html>oops</html>"
    note = json.loads((tmp_path / where.replace(".json.gz", ".reason.json")).read_text())
    assert note["reason"] == "body is not JSON"
    assert note["status"] == 200
    assert lake.list_snapshots() == []  # quarantined bodies are never loaded


def test_same_code_works_on_another_fsspec_filesystem(recorded_assets: bytes) -> None:
    lake = Lake("memory://cryptolytics-test-lake")
    written = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)
    assert lake.list_snapshots() == [written.path]
    assert lake.read(written.path) == recorded_assets
    assert not lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets).created


@pytest.mark.parametrize(
    ("source", "timestamp"),
    [("../../etc", 1), ("coincap", -5), ("coincap", "1/../../x"), ("coincap", True)],
)
def test_paths_are_built_from_validated_values_only(source: str, timestamp: object) -> None:
    with pytest.raises(ValueError, match=r"unknown source|timestamp must be"):
        snapshot_path(source, timestamp)  # type: ignore[arg-type]


def test_the_lake_on_gcs_writes_once_lists_and_quarantines(
    gcs_emulator: Emulator, recorded_assets: bytes
) -> None:
    """The same lake code on gs://, through gcsfs, against a GCS emulator on 127.0.0.1."""
    import gcsfs

    gcs = gcsfs.GCSFileSystem(endpoint_url=gcs_emulator.url, token="anon", project="test")
    gcs.mkdir("cryptolytics-lake-test")
    lake = Lake("gs://cryptolytics-lake-test/lake", endpoint_url=gcs_emulator.url, token="anon")

    written = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)
    again = lake.write_snapshot("coincap", RECORDED_TIMESTAMP, b"something else")
    later = lake.write_snapshot("coincap", RECORDED_TIMESTAMP + 300_000, recorded_assets)
    where = lake.quarantine("coincap", b"<html>oops</html>", "body is not JSON")

    assert written.created and not again.created and later.created
    assert lake.list_snapshots() == [written.path, later.path]
    assert lake.read(written.path) == recorded_assets  # the first body, not the second
    assert lake.latest_timestamp("coincap") == RECORDED_TIMESTAMP + 300_000
    gcs.invalidate_cache()
    objects = sorted(gcs.find("cryptolytics-lake-test"))
    assert objects == sorted(
        f"cryptolytics-lake-test/lake/{path}"
        for path in (written.path, later.path, where, where.replace(".json.gz", ".reason.json"))
    )  # nothing else: no temporary objects left behind
