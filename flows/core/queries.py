"""Queries over the published models that more than one reader runs: the app's market page
and the pipeline's run summary show the same movers, so they read them with the same SQL.
Portable SQL (DuckDB and BigQuery, through the app's reader and both warehouses), `$name`
parameters bound by the caller."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

# What a reader binds to `$name`: the app's and the run summary's queries need no other types.
QueryParams = Mapping[str, str | int | float | bool | datetime | None]


def movers_sql(direction: Literal["gainers", "losers"]) -> str:
    """Top 24h gainers or losers of the latest ranking, `$limit` of them: our own 24h change,
    CoinCap's where our history is too short."""
    order = "desc" if direction == "gainers" else "asc"
    return f"""
select rank, name, symbol, price_usd,
       coalesce(change_24h_pct, api_change_24h_pct) as change_24h_pct,
       volume_usd_24hr
from prod.mart_latest_ranking
where coalesce(change_24h_pct, api_change_24h_pct) is not null
order by coalesce(change_24h_pct, api_change_24h_pct) {order}, rank
limit $limit
"""
