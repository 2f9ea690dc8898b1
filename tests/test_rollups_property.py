"""Property: however the 5-minute rows arrive (in any order, over several runs), the
incremental hourly and daily rollups equal a direct aggregate of those rows. Over five days,
so late files reach back past the recent span that prunes each build's reads (the day an
hour before the newest file: dbt/macros/new_rows.sql)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.core.settings import Settings
from testkit.pipeline import tick

pytestmark = pytest.mark.integration

START_MS = 1_742_083_200_000  # 2025-03-16 00:00 UTC
STEP_MS = 300_000
COINS = ("bitcoin", "ethereum", "tether")

DIRECT = """
select id as coin_id, date_trunc('{unit}', snapshot_at) as bucket_at,
       round(arg_min(price_usd, snapshot_at), 9), round(max(price_usd), 9),
       round(min(price_usd), 9), round(arg_max(price_usd, snapshot_at), 9),
       arg_max(rank, snapshot_at), count(*)
from raw.coincap_assets group by all order by 1, 2
"""
ROLLUP = """
select coin_id, bucket_at, round(open_price_usd, 9), round(high_price_usd, 9),
       round(low_price_usd, 9), round(close_price_usd, 9), last_rank, snapshot_count
from prod.mart_coin_{name} order by 1, 2
"""


def body(step: int, prices: list[float]) -> bytes:
    data = [
        {
            "id": coin,
            "rank": str(rank + 1),
            "symbol": coin[:3].upper(),
            "name": coin,
            "priceUsd": f"{price:.10f}",
            "marketCapUsd": f"{price * 1000:.4f}",
        }
        for rank, (coin, price) in enumerate(zip(COINS, prices, strict=True))
    ]
    return json.dumps({"data": data, "timestamp": START_MS + step * STEP_MS}).encode()


snapshots = st.dictionaries(
    keys=st.integers(min_value=0, max_value=1440),  # 5-minute steps over 5 days
    values=st.lists(st.floats(min_value=0.01, max_value=1e5), min_size=3, max_size=3),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(snapshots=snapshots, runs=st.integers(min_value=1, max_value=3), seed=st.randoms())
def test_incremental_rollups_equal_a_direct_aggregate(
    snapshots: dict[int, list[float]], runs: int, seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for key, value in {
            "CRYPTOLYTICS_LAKE_URL": root / "lake",
            "CRYPTOLYTICS_DUCKDB_PATH": root / "warehouse.duckdb",
            "CRYPTOLYTICS_SERVING_DIR": root / "serving",
        }.items():
            monkeypatch.setenv(key, str(value))
        steps = list(snapshots)
        seed.shuffle(steps)  # late and out-of-order arrivals included
        batches = [steps[i::runs] for i in range(runs)]
        for batch in batches:
            tick(
                Settings(),
                [("coincap", START_MS + s * STEP_MS, body(s, snapshots[s])) for s in batch],
            )

        with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
            for unit, name in (("hour", "hourly"), ("day", "daily")):
                direct = con.execute(DIRECT.format(unit=unit)).fetchall()
                rolled = con.execute(ROLLUP.format(name=name)).fetchall()
                assert rolled == direct, f"{name} rollup differs from the direct aggregate"
