"""The bundled replay dataset: real 2021 daily market data (CoinGecko), CoinCap-shaped.

Built by `flows.replay.build_dataset`; see the README's Data credits.
"""

from __future__ import annotations

import threading
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import duckdb

DATASET_PATH = Path(__file__).resolve().parent / "data" / "coingecko_2021_daily_top2000.parquet"

ASSET_FIELDS = (
    "id",
    "rank",
    "symbol",
    "name",
    "supply",
    "price_usd",
    "market_cap_usd",
    "volume_usd_24hr",
    "change_percent_24hr",
)


class ReplayDataset:
    """Read-only access to the replay days; each day is a few thousand rows."""

    def __init__(self, path: Path = DATASET_PATH) -> None:
        if not path.exists():
            raise FileNotFoundError(f"replay dataset missing at {path}")
        self.path = path
        self._con = duckdb.connect()
        self._lock = threading.Lock()  # the replay server answers from several threads
        # Derived here, not stored: supply from market cap and price; the 24h change from the
        # same coin's previous day (null on its first day or after a gap, never invented).
        self._con.execute(
            """
            create table replay as
            select *,
                market_cap_usd::double / price_usd::double as supply,
                case when lag(day_ms) over coin = day_ms - 86400000
                     then (price_usd::double / lag(price_usd) over coin - 1) * 100
                end as change_percent_24hr
            from read_parquet($path)
            window coin as (partition by id order by day_ms)
            """,
            {"path": str(path)},
        )

    @cached_property
    def days(self) -> list[int]:
        """Epoch ms of every replay day, oldest first."""
        with self._lock:
            rows = self._con.execute("select distinct day_ms from replay order by 1").fetchall()
        return [day for (day,) in rows]

    def day_after(self, timestamp_ms: int | None) -> int:
        """The first day strictly after `timestamp_ms` (the first day for None); the last
        day once the replay is over, so a finished replay adds nothing new."""
        for day in self.days:
            if timestamp_ms is None or day > timestamp_ms:
                return day
        return self.days[-1]

    def assets(self, day_ms: int, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._con.execute(
                f"select {', '.join(ASSET_FIELDS)} from replay where day_ms = $day "
                "order by rank limit $limit offset $offset",
                {"day": day_ms, "limit": limit, "offset": offset},
            ).fetchall()
        return [dict(zip(ASSET_FIELDS, row, strict=True)) for row in rows]

    def history(self, coin_id: str, start_ms: int, end_ms: int) -> list[tuple[int, float, float]]:
        """(day, price, supply) of one coin for days in [start_ms, end_ms)."""
        with self._lock:
            return self._con.execute(
                "select day_ms, price_usd, supply from replay "
                "where id = $id and day_ms >= $start and day_ms < $end order by day_ms",
                {"id": coin_id, "start": start_ms, "end": end_ms},
            ).fetchall()

    def close(self) -> None:
        self._con.close()


@cache
def shared_dataset() -> ReplayDataset:
    """The process's one dataset: loading it takes about half a second, which a long-running
    deployment process should pay once, not on every 5-minute tick."""
    return ReplayDataset()
