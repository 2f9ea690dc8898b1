"""Queries over the published models that more than one reader runs: the app's market page
and the pipeline's run summary show the same movers, so they read them with the same SQL.
Portable SQL (DuckDB and BigQuery, through the app's reader and both warehouses), `$name`
parameters bound by the caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# What a reader binds to `$name`: the app's and the run summary's queries need no other types.
QueryParams = Mapping[str, str | int | float | bool | datetime | None]


@dataclass(frozen=True)
class MoverFilter:
    """What a coin needs to count as a mover, as the market sites filter theirs: enough 24h
    volume and market cap to be traded, and no data-quality flag (mart_latest_ranking)."""

    min_volume_usd: float
    min_market_cap_usd: float

    def params(self, limit: int) -> dict[str, float | int]:
        return {
            "limit": limit,
            "min_volume_usd": self.min_volume_usd,
            "min_market_cap_usd": self.min_market_cap_usd,
        }

    def described(self) -> str:
        return (
            f"at least ${self.min_volume_usd:,.0f} of 24h volume and "
            f"${self.min_market_cap_usd:,.0f} of market cap, no data-quality flag"
        )


def movers_sql(direction: Literal["gainers", "losers"]) -> str:
    """Top 24h gainers or losers of the latest ranking, `$limit` of them, among coins that
    pass the MoverFilter (`$min_volume_usd`, `$min_market_cap_usd`): our own 24h change,
    CoinCap's where our history is too short."""
    order = "desc" if direction == "gainers" else "asc"
    return f"""
select rank, coin_id, name, symbol, price_usd,
       coalesce(change_24h_pct, api_change_24h_pct) as change_24h_pct,
       volume_usd_24hr, market_cap_usd
from prod.mart_latest_ranking
where coalesce(change_24h_pct, api_change_24h_pct) is not null
  and coalesce(volume_usd_24hr, 0) >= $min_volume_usd
  and coalesce(market_cap_usd, 0) >= $min_market_cap_usd
  and not has_quality_flag
order by coalesce(change_24h_pct, api_change_24h_pct) {order}, rank
limit $limit
"""
