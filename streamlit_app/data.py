"""Every query the app runs, in one place.

- Reads the prod models only (never raw), through the target's reader: the published
  serving copy on the local target (see flows/adapters/serving.py).
- User input only ever travels as bound `$parameters`; the few things that shape SQL
  (sort column, range) come from fixed whitelists below, never from free text.
- Results are cached for `CACHE_TTL_SECONDS` (a minute: a fifth of the 5-minute schedule),
  so a new snapshot shows within a minute of being published and pages stay fast.
- Long ranges read the hourly and daily rollups, so no query scans the 5-minute history
  beyond the last week and no chart gets more than a few thousand points.
- Every page reads "as of" the latest snapshot (`as_of()`): series, ranges and extremes end
  there. Backfilled history can reach past it (the replay's demo backfills all of 2021 while
  the snapshots are still in January); none of that is shown.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import streamlit as st
import yaml

from flows.adapters.app_reader import open_app_reader
from flows.adapters.serving import NoDataYet, Reader
from flows.core.queries import MoverFilter, movers_sql
from flows.core.settings import Settings, get_settings

# A fifth of the 5-minute schedule by default: new snapshots show within a minute.
CACHE_TTL_SECONDS = get_settings().app_cache_ttl_seconds
SCHEDULE_MINUTES = 5
SNAPSHOTS_PER_DAY = 24 * 60 // SCHEDULE_MINUTES
# Two live snapshots further apart than this have at least one missed tick between them.
GAP_MINUTES = 2 * SCHEDULE_MINUTES
GAP_LOOKBACK_DAYS = 30
DEAD_LETTERS_SHOWN = 50

Range = Literal["1D", "7D", "1M", "3M", "1Y", "ALL"]
RANGES: tuple[Range, ...] = ("1D", "7D", "1M", "3M", "1Y", "ALL")


@dataclass(frozen=True)
class RangeSpec:
    days: int | None  # None: everything we have
    relation: str  # which model carries this range
    granularity: str  # said under the chart


# The time unit of each relation's rows (None: a row per snapshot); SQL takes units from
# here only, never from input.
BUCKET_UNITS: dict[str, str | None] = {"facts": None, "hourly": "hour", "daily": "day"}

RANGE_SPECS: dict[Range, RangeSpec] = {
    "1D": RangeSpec(1, "facts", "5-minute snapshots"),
    "7D": RangeSpec(7, "facts", "5-minute snapshots"),
    "1M": RangeSpec(30, "hourly", "hourly closes"),
    "3M": RangeSpec(90, "hourly", "hourly closes"),
    "1Y": RangeSpec(365, "daily", "daily closes"),
    "ALL": RangeSpec(None, "daily", "daily closes"),
}


@dataclass(frozen=True)
class Quote:
    """A currency prices are shown in: USD as the source gives them; a coin's own USD price
    at the same moment (the same snapshot, or the same hour's or day's close), derived from
    our snapshots, so it works on the replay and live alike; or a fiat currency's USD rate
    from CoinCap's `/rates` (live only), the last of the same hour or day."""

    code: str  # what the URL and the page say
    coin_id: str | None = None  # whose price divides ours; None: USD itself, or a fiat
    fiat: bool = False  # divided by the currency's rate (`mart_fiat_rates_hourly`)

    @property
    def converted(self) -> bool:
        return self.coin_id is not None or self.fiat

    @property
    def suffix(self) -> str:
        """Column names carry their unit (`price_btc`), as the warehouse's do (`price_usd`)."""
        return self.code.lower()


USD = Quote("USD")
QUOTES: dict[str, Quote] = {
    q.code: q for q in (USD, Quote("BTC", "bitcoin"), Quote("ETH", "ethereum"))
}


def quote_columns(quote: Quote) -> dict[str, str]:
    """The series' money columns in a quote: price, market cap, 24h volume."""
    return {
        "price": f"price_{quote.suffix}",
        "market_cap": f"market_cap_{quote.suffix}",
        "volume": f"volume_{quote.suffix}_24hr",
    }


# What each granularity reads, for one or several coins (`$coin_0`, `$coin_1` ...: a list
# bound one value per parameter, the same on DuckDB and BigQuery); columns renamed to one
# shape for the charts.
SERIES_COLUMNS = {
    "facts": (
        "prod.facts_coins",
        "snapshot_at",
        "price_usd, market_cap_usd, volume_usd_24hr, rank, supply",
    ),
    **{
        granularity: (
            f"prod.mart_coin_{granularity}",
            "bucket_at",
            "close_price_usd as price_usd, close_market_cap_usd as market_cap_usd, "
            "last_volume_usd_24hr as volume_usd_24hr, last_rank as rank, last_supply as supply",
        )
        for granularity in ("hourly", "daily")
    },
}


def series_sql(relation: str, coin_count: int, quote: Quote = USD) -> str:
    """One scan for every coin asked for (a scan per coin cost 8x on Compare at 7D). In a
    quote other than USD, each money figure is divided by the quote coin's price at the same
    moment (`$quote_coin`); a moment without that price has no point, rather than a guess."""
    table, time_column, columns = SERIES_COLUMNS[relation]
    ids = ", ".join(f"$coin_{i}" for i in range(coin_count))
    window = f"{time_column} > $since and {time_column} <= $as_of"
    if not quote.converted:
        return f"""
        select {time_column} as observed_at, coin_id, {columns}
        from {table}
        where coin_id in ({ids}) and {window}
        order by coin_id, observed_at
    """
    named = quote_columns(quote)
    if quote.fiat:
        unit = BUCKET_UNITS[relation] or "hour"  # a snapshot takes its hour's rate
        return f"""
        with chosen as (
            select {time_column} as observed_at, coin_id, {columns}
            from {table}
            where coin_id in ({ids}) and {window}
        ),
        {_fiat_rates_cte(unit)}
        select chosen.observed_at, chosen.coin_id,
               chosen.price_usd / rates.rate_usd as {named["price"]},
               chosen.market_cap_usd / rates.rate_usd as {named["market_cap"]},
               chosen.volume_usd_24hr / rates.rate_usd as {named["volume"]},
               chosen.rank, chosen.supply
        from chosen
        inner join rates on rates.rate_at = date_trunc('{unit}', chosen.observed_at)
        order by chosen.coin_id, chosen.observed_at
    """
    # one scan for the coins and the quote coin; each moment's quote price is a window
    # over that moment's few rows (a second scan for the quote coin cost 1.4x at 7D)
    return f"""
        with read as (
            select {time_column} as observed_at, coin_id, {columns}
            from {table}
            where coin_id in ({ids}, $quote_coin) and {window}
        ),
        quoted as (
            select
                *,
                max(case when coin_id = $quote_coin and price_usd > 0 then price_usd end)
                    over (partition by observed_at) as quote_price_usd
            from read
        )
        select observed_at, coin_id,
               price_usd / quote_price_usd as {named["price"]},
               market_cap_usd / quote_price_usd as {named["market_cap"]},
               volume_usd_24hr / quote_price_usd as {named["volume"]},
               rank, supply
        from quoted
        where coin_id in ({ids}) and quote_price_usd is not null
        order by coin_id, observed_at
    """


def _fiat_rates_cte(unit: str) -> str:
    """`rates`: the fiat currency's (`$quote_symbol`) last rate of each hour or day in the
    range (from the hour or day `$since` falls in: a figure after it takes that bucket's)."""
    return f"""rates as (
            select date_trunc('{unit}', bucket_at) as rate_at,
                   arg_max(close_rate_usd, bucket_at) as rate_usd
            from prod.mart_fiat_rates_hourly
            where symbol = $quote_symbol and close_rate_usd > 0
              and bucket_at >= date_trunc('{unit}', $since) and bucket_at <= $as_of
            group by date_trunc('{unit}', bucket_at)
        )"""


def _quote_params(quote: Quote) -> dict[str, str]:
    if quote.fiat:
        return {"quote_symbol": quote.code}
    return {} if quote.coin_id is None else {"quote_coin": quote.coin_id}


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def fiat_quotes() -> tuple[Quote, ...]:
    """The fiat currencies of the latest hour's `/rates` (none on the replay, which has
    none, or before the first live rates)."""
    frame = _query(
        """
        select symbol from prod.mart_fiat_rates_hourly
        where bucket_at = (select max(bucket_at) from prod.mart_fiat_rates_hourly)
          and symbol <> 'USD'
        order by symbol
        """
    )
    return tuple(Quote(str(symbol), fiat=True) for symbol in frame["symbol"])


# Sort options of the ranking table: label -> (column, descending). Whitelisted.
SORTS: dict[str, tuple[str, bool]] = {
    "Rank": ("rank", False),
    "Price": ("price_usd", True),
    "1h %": ("change_1h_pct", True),
    "24h %": ("change_24h_pct", True),
    "7d %": ("change_7d_pct", True),
    "Market cap": ("market_cap_usd", True),
    "Volume (24h)": ("volume_usd_24hr", True),
    "Supply": ("supply", True),
}


def reader() -> Reader:
    """The process-wide reader of the configured target (it keeps connections warm)."""
    settings = get_settings()
    return _shared_reader(settings.model_dump_json(), settings)


@st.cache_resource(show_spinner=False)
def _shared_reader(settings_key: str, _settings: Settings) -> Reader:
    """One reader per configuration (`_settings` is not hashed: the key stands for it)."""
    return open_app_reader(_settings)


def _query(sql: str, **params: Any) -> pd.DataFrame:
    return reader().query(sql, params)


def has_data() -> bool:
    try:
        return bool(_query("select count(*) as n from prod.mart_market_overview")["n"].iat[0])
    except NoDataYet:
        return False


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def data_source() -> dict[str, Any]:
    """Live or replay, and the replayed period: every page says which."""
    row = _query(
        """
        select
            arg_max(source, snapshot_at) as latest_source,
            min(case when source = 'replay' then snapshot_at end) as replay_from,
            max(case when source = 'replay' then snapshot_at end) as replay_to,
            count(case when source = 'replay' then 1 end) as replay_snapshots
        from prod.mart_market_overview
        """
    ).iloc[0]
    return row.to_dict()


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def market_summary() -> dict[str, Any]:
    """The latest market totals and the same totals about 24 hours earlier."""
    frame = _query(
        """
        with latest as (
            select * from prod.mart_market_overview order by snapshot_at desc limit 1
        ),
        day_before as (
            select overview.*
            from prod.mart_market_overview as overview, latest
            where overview.snapshot_at <= latest.snapshot_at - interval 24 hour
              and overview.snapshot_at >= latest.snapshot_at - interval 26 hour
            order by overview.snapshot_at desc
            limit 1
        )
        select 'now' as moment, * from latest
        union all
        select 'day_before' as moment, * from day_before
        """
    )
    rows = {row["moment"]: row for row in frame.to_dict("records")}
    return {"now": rows.get("now"), "day_before": rows.get("day_before")}


def _like_pattern(text: str) -> str:
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def ranking(
    search: str = "", top_n: int = 100, min_market_cap: float = 0.0, sort: str = "Rank"
) -> pd.DataFrame:
    """The latest ranking, filtered and sorted; the 7-day sparkline comes with each row."""
    column, descending = SORTS.get(sort, SORTS["Rank"])
    order = f"{column} {'desc' if descending else 'asc'} nulls last, rank"
    return _query(
        f"""
        select rank, coin_id, name, symbol, price_usd, change_1h_pct, change_24h_pct,
               change_7d_pct, market_cap_usd, volume_usd_24hr, supply, sparkline_7d
        from prod.mart_latest_ranking
        where rank <= $top_n
          and coalesce(market_cap_usd, 0) >= $min_market_cap
          and (lower(name) like $pattern escape '\\' or lower(symbol) like $pattern escape '\\')
        order by {order}
        """,
        top_n=int(top_n),
        min_market_cap=float(min_market_cap),
        pattern=_like_pattern(search),
    )


def mover_filter() -> MoverFilter:
    """What a coin needs to be a mover (settings; the page states it)."""
    return get_settings().mover_filter


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def movers(direction: Literal["gainers", "losers"], limit: int = 10) -> pd.DataFrame:
    """Top 24h gainers or losers among liquid, unflagged coins (the same query and filter
    as the pipeline's run summary)."""
    return _query(movers_sql(direction), **mover_filter().params(int(limit)))


# Rank horizons of mart_latest_ranking (its reference snapshots): label -> column suffix.
RANK_HORIZONS: dict[str, str] = {"24h": "24h", "7d": "7d", "30d": "30d"}


def rank_movers_sql(horizon: str, direction: Literal["climbers", "fallers"]) -> str:
    """The coins that climbed or fell most places over a horizon, among those that pass the
    movers' filter (a supply jump or a dead market moves a rank for no market reason)."""
    suffix = RANK_HORIZONS[horizon]  # KeyError for anything not whitelisted
    order = "desc" if direction == "climbers" else "asc"
    return f"""
        select rank, coin_id, name, symbol, rank_{suffix}_ago as rank_before,
               rank_change_{suffix} as rank_change, price_usd, volume_usd_24hr, market_cap_usd
        from prod.mart_latest_ranking
        where rank_change_{suffix} is not null
          and rank_change_{suffix} {">" if direction == "climbers" else "<"} 0
          and coalesce(volume_usd_24hr, 0) >= $min_volume_usd
          and coalesce(market_cap_usd, 0) >= $min_market_cap_usd
          and not has_quality_flag
        order by rank_change_{suffix} {order}, rank
        limit $limit
    """


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def rank_movers(
    horizon: str, direction: Literal["climbers", "fallers"], limit: int = 10
) -> pd.DataFrame:
    """Most places climbed or lost since the snapshot `horizon` before the latest."""
    return _query(rank_movers_sql(horizon, direction), **mover_filter().params(int(limit)))


# Where a range's ranks at its start are read: the serving copy keeps 8 days of snapshots,
# so longer ranges read the last rank of the hour or day (names and columns whitelisted).
RANK_AT = {
    "facts": ("prod.facts_coins", "snapshot_at", "rank"),
    "hourly": ("prod.mart_coin_hourly", "bucket_at", "last_rank"),
    "daily": ("prod.mart_coin_daily", "bucket_at", "last_rank"),
}


def turnover_sql(relation: str) -> str:
    """Coins in the top `$top_n` now and not at `$start_at`, or the other way round, with
    their ranks at both moments (null: not ranked then, or no longer ranked)."""
    table, time_column, rank_column = RANK_AT[relation]
    return f"""
        with then_ranked as (
            select coin_id, {rank_column} as rank
            from {table}
            where {time_column} = $start_at and {rank_column} is not null
        ),
        then_top as (
            select coin_id from then_ranked where rank <= $top_n
        ),
        now_top as (
            select coin_id from prod.mart_latest_ranking where rank <= $top_n
        ),
        moved as (
            select
                coalesce(now_top.coin_id, then_top.coin_id) as coin_id,
                case when then_top.coin_id is null then 'entered' else 'left' end as movement
            from now_top
            full outer join then_top on now_top.coin_id = then_top.coin_id
            where now_top.coin_id is null or then_top.coin_id is null
        )
        select moved.movement, moved.coin_id, dim.name, dim.symbol,
               then_ranked.rank as rank_before, ranking.rank as rank_now
        from moved
        left join then_ranked on then_ranked.coin_id = moved.coin_id
        left join prod.dim_coins as dim on dim.coin_id = moved.coin_id
        left join prod.mart_latest_ranking as ranking on ranking.coin_id = moved.coin_id
        order by moved.movement, coalesce(ranking.rank, then_ranked.rank)
    """


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def top_turnover(top_n: int, range_: Range) -> tuple[datetime | None, pd.DataFrame]:
    """Entries to and exits from the top N between the range's first ranked moment and the
    latest snapshot: (that first moment, the coins), or (None, empty) with only one moment."""
    spec = RANGE_SPECS[range_]
    latest = as_of()
    if latest is None:
        return None, pd.DataFrame()
    first = _query(
        """
        select min(snapshot_at) as first_at from prod.mart_market_overview
        where snapshot_at > $since and snapshot_at <= $as_of
        """,
        since=_since(spec.days, latest),
        as_of=latest,
    )["first_at"].iat[0]
    if pd.isna(first) or pd.Timestamp(first) >= pd.Timestamp(latest):
        return None, pd.DataFrame()
    start = pd.Timestamp(first)
    unit = BUCKET_UNITS[spec.relation]
    start_at = start.floor({"hour": "h", "day": "D"}[unit]) if unit else start
    frame = _query(turnover_sql(spec.relation), start_at=start_at.to_pydatetime(), top_n=top_n)
    return start_at.to_pydatetime(), frame


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def most_traded(limit: int = 10) -> pd.DataFrame:
    return _query(
        """
        select rank, name, symbol, volume_usd_24hr, price_usd
        from prod.mart_latest_ranking
        where volume_usd_24hr is not null
        order by volume_usd_24hr desc
        limit $limit
        """,
        limit=int(limit),
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def coins() -> pd.DataFrame:
    """Every coin we have seen, current ones first, for the pickers."""
    return _query(
        """
        select dim.coin_id, dim.name, dim.symbol, ranking.rank
        from prod.dim_coins as dim
        left join prod.mart_latest_ranking as ranking using (coin_id)
        order by ranking.rank nulls last, dim.name
        """
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def coin_profile(coin_id: str) -> dict[str, Any] | None:
    """Attributes, latest figures (if still ranked) and all-time extremes within our data,
    as of the latest snapshot."""
    as_of_at = as_of()
    if as_of_at is None:
        return None
    frame = _query(
        """
        with extremes as (
            select
                coin_id,
                max(high_price_usd) as ath_price_usd,
                arg_max(bucket_at, high_price_usd) as ath_at,
                min(low_price_usd) as atl_price_usd,
                arg_min(bucket_at, low_price_usd) as atl_at,
                count(*) as days_seen
            from prod.mart_coin_daily
            where coin_id = $coin_id and bucket_at <= $as_of
            group by coin_id
        )
        select dim.*, ranking.rank, ranking.price_usd, ranking.change_24h_pct,
               ranking.market_cap_usd, ranking.volume_usd_24hr, ranking.snapshot_at,
               ranking.flag_no_volume, ranking.flag_volume_unknown,
               ranking.flag_price_without_market_cap, ranking.flag_supply_jump,
               ranking.flag_implausible_move,
               extremes.ath_price_usd, extremes.ath_at, extremes.atl_price_usd, extremes.atl_at,
               extremes.days_seen
        from prod.dim_coins as dim
        left join prod.mart_latest_ranking as ranking using (coin_id)
        left join extremes using (coin_id)
        where dim.coin_id = $coin_id
        """,
        coin_id=coin_id,
        as_of=as_of_at,
    )
    return None if frame.empty else frame.iloc[0].to_dict()


def _since(days: int | None, latest: datetime) -> datetime:
    return datetime(1970, 1, 1) if days is None else latest - pd.Timedelta(days=days)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def as_of() -> datetime | None:
    """The latest snapshot: the "now" of every page (nothing after it is shown)."""
    value = _query("select max(snapshot_at) as latest from prod.mart_market_overview")[
        "latest"
    ].iat[0]
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def coin_series(coin_id: str, range_: Range, quote: Quote = USD) -> pd.DataFrame:
    """Price, market cap, volume (in `quote`), rank and supply of one coin over a range, at
    the granularity the range calls for. Ranges end at the latest snapshot (`as_of`)."""
    return _series((coin_id,), range_, quote=quote).drop(columns="coin_id", errors="ignore")


def _series(
    coin_ids: tuple[str, ...],
    range_: Range,
    spec: RangeSpec | None = None,
    quote: Quote = USD,
) -> pd.DataFrame:
    spec = spec or RANGE_SPECS[range_]
    latest = as_of()
    if latest is None or not coin_ids:
        return pd.DataFrame()
    return _query(
        series_sql(spec.relation, len(coin_ids), quote),
        **{f"coin_{i}": coin_id for i, coin_id in enumerate(coin_ids)},
        **_quote_params(quote),
        since=_since(spec.days, latest),
        as_of=latest,
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def latest_quote(quote: Quote) -> dict[str, Any] | None:
    """The quote's latest USD value and its 24h change, as `price_usd` and `change_24h_pct`
    (None for USD, or when the quote coin is not in the latest ranking, or the currency has
    no rate): what converts the coin page's headline. A fiat rate's change is against the
    same hour a day earlier (null without one)."""
    if quote.fiat:
        frame = _query(
            """
            with latest as (
                select bucket_at, close_rate_usd from prod.mart_fiat_rates_hourly
                where symbol = $symbol and bucket_at <= $as_of and close_rate_usd > 0
                order by bucket_at desc
                limit 1
            ),
            day_before as (
                select rates.close_rate_usd
                from prod.mart_fiat_rates_hourly as rates, latest
                where rates.symbol = $symbol
                  and rates.bucket_at = latest.bucket_at - interval 24 hour
            )
            select latest.close_rate_usd as price_usd,
                   100 * (latest.close_rate_usd / day_before.close_rate_usd - 1)
                       as change_24h_pct
            from latest
            left join day_before on true
            """,
            symbol=quote.code,
            as_of=as_of(),
        )
        return None if frame.empty else frame.iloc[0].to_dict()
    if quote.coin_id is None:
        return None
    frame = _query(
        """
        select price_usd, change_24h_pct from prod.mart_latest_ranking
        where coin_id = $coin_id and price_usd > 0
        """,
        coin_id=quote.coin_id,
    )
    return None if frame.empty else frame.iloc[0].to_dict()


# The whole market over a range: every snapshot up to 7D, then the last snapshot of each
# hour or day (BUCKET_UNITS).
MARKET_COLUMNS = """total_market_cap_usd, total_volume_usd_24hr, asset_count,
               btc_dominance_pct, eth_dominance_pct, stablecoin_dominance_pct"""


def _market_history_sql(unit: str | None) -> str:
    if unit is None:
        return f"""
        select snapshot_at as observed_at, {MARKET_COLUMNS}
        from prod.mart_market_overview
        where snapshot_at > $since and snapshot_at <= $as_of
        order by observed_at
        """
    return f"""
        select date_trunc('{unit}', snapshot_at) as observed_at, {MARKET_COLUMNS}
        from prod.mart_market_overview
        where snapshot_at > $since and snapshot_at <= $as_of
        qualify row_number() over (
            partition by date_trunc('{unit}', snapshot_at) order by snapshot_at desc
        ) = 1
        order by observed_at
        """


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def market_history(range_: Range) -> pd.DataFrame:
    """Total cap, 24h volume, dominance and the number of coins behind each point, from our
    own snapshots, over a range that ends at the latest snapshot; a missed stretch is a gap
    (a row of nulls), never a line drawn across it."""
    spec = RANGE_SPECS[range_]
    latest = as_of()
    if latest is None:
        return pd.DataFrame()
    frame = _query(
        _market_history_sql(BUCKET_UNITS[spec.relation]),
        since=_since(spec.days, latest),
        as_of=latest,
    )
    return with_gaps(frame, MARKET_STEPS[spec.relation])


MARKET_STEPS = {
    "facts": pd.Timedelta(minutes=SCHEDULE_MINUTES),
    "hourly": pd.Timedelta(hours=1),
    "daily": pd.Timedelta(days=1),
}


def with_gaps(frame: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """A row of nulls inside every stretch longer than twice the usual spacing, so a line
    stops there. The usual spacing is the range's step or the data's own, if sparser (the
    daily replay on 7D is one point a day, which is no gap)."""
    if len(frame) < 3:
        return frame
    times = pd.to_datetime(frame["observed_at"])
    spacing = max(step, times.diff().median())
    gaps = times.diff() > 2 * spacing
    if not gaps.any():
        return frame
    breaks = pd.DataFrame({"observed_at": times[gaps] - spacing})
    filled = (
        pd.concat([frame, breaks], ignore_index=True)
        .sort_values("observed_at")
        .reset_index(drop=True)
    )
    # a null row made integer columns floats ("2,000.0 coins"): nullable integers again
    integers = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])]
    return filled.astype(dict.fromkeys(integers, "Int64"))


# Candles: hourly up to 7D, daily beyond (a 1M chart of 720 hourly candles is unreadable).
CANDLE_RELATIONS: dict[Range, str] = {
    "1D": "hourly",
    "7D": "hourly",
    "1M": "daily",
    "3M": "daily",
    "1Y": "daily",
    "ALL": "daily",
}


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def coin_candles(coin_id: str, range_: Range) -> pd.DataFrame:
    """Open, high, low and close of each hour or day in the range, with the number of prices
    behind each (a candle of one price is a dash, not a candle: see `candles_supported`)."""
    latest = as_of()
    if latest is None:
        return pd.DataFrame()
    granularity = CANDLE_RELATIONS[range_]
    return _query(
        f"""
        select bucket_at as observed_at, open_price_usd, high_price_usd, low_price_usd,
               close_price_usd, snapshot_count
        from prod.mart_coin_{granularity}
        where coin_id = $coin_id and bucket_at > $since and bucket_at <= $as_of
        order by observed_at
        """,
        coin_id=coin_id,
        since=_since(RANGE_SPECS[range_].days, latest),
        as_of=latest,
    )


def candles_supported(candles: pd.DataFrame) -> bool:
    """Candles say something only when most buckets hold several prices (the daily replay
    and daily backfill hold one a day: open = high = low = close)."""
    return len(candles) >= 2 and float(candles["snapshot_count"].median()) >= 2


# Compare's statistics read the rollups: hourly returns up to 7D, daily beyond. The number of
# periods a year annualises volatility (crypto trades every hour of every day).
STATS_RELATIONS: dict[Range, tuple[str, int]] = {
    "1D": ("hourly", 24 * 365),
    "7D": ("hourly", 24 * 365),
    "1M": ("daily", 365),
    "3M": ("daily", 365),
    "1Y": ("daily", 365),
    "ALL": ("daily", 365),
}


def _closes_cte(granularity: str, ids: str, quote: Quote) -> str:
    """Each chosen coin's closes in the range, in USD or divided by the quote coin's close of
    the same bucket (a bucket without the quote coin's close is left out)."""
    table, unit = f"prod.mart_coin_{granularity}", BUCKET_UNITS[granularity] or "hour"
    if quote.fiat:
        return f"""
        {_fiat_rates_cte(unit)},
        closes as (
            select chosen.coin_id, chosen.bucket_at,
                   chosen.close_price_usd / rates.rate_usd as close_price
            from {table} as chosen
            inner join rates on rates.rate_at = chosen.bucket_at
            where chosen.coin_id in ({ids})
              and chosen.bucket_at > $since and chosen.bucket_at <= $as_of
              and chosen.close_price_usd > 0
        ),"""
    if quote.coin_id is None:
        return f"""
        closes as (
            select coin_id, bucket_at, close_price_usd as close_price
            from {table}
            where coin_id in ({ids}) and bucket_at > $since and bucket_at <= $as_of
              and close_price_usd > 0
        ),"""
    return f"""
        read as (
            select coin_id, bucket_at, close_price_usd
            from {table}
            where coin_id in ({ids}, $quote_coin) and bucket_at > $since and bucket_at <= $as_of
        ),
        quoted as (
            select
                *,
                max(case when coin_id = $quote_coin and close_price_usd > 0
                    then close_price_usd end) over (partition by bucket_at) as quote_close
            from read
        ),
        closes as (
            select coin_id, bucket_at, close_price_usd / quote_close as close_price
            from quoted
            where coin_id in ({ids}) and close_price_usd > 0 and quote_close is not null
        ),"""


def _returns_cte(granularity: str, coin_count: int, quote: Quote = USD) -> str:
    """Each chosen coin's closes in the range and its return over the previous bucket; a
    return across a missing bucket is left out (it would span two periods as one)."""
    ids = ", ".join(f"$coin_{i}" for i in range(coin_count))
    step = BUCKET_UNITS[granularity]
    return f"""{_closes_cte(granularity, ids, quote)}
        lagged as (
            select
                coin_id,
                bucket_at,
                close_price,
                lag(close_price) over (partition by coin_id order by bucket_at) as previous_close,
                lag(bucket_at) over (partition by coin_id order by bucket_at) as previous_at,
                max(close_price) over (
                    partition by coin_id order by bucket_at
                    rows between unbounded preceding and current row
                ) as peak_close
            from closes
        ),
        returns as (
            select
                coin_id,
                bucket_at,
                close_price,
                peak_close,
                case
                    when previous_at = bucket_at - interval 1 {step}
                    then close_price / previous_close - 1
                end as period_return
            from lagged
        )"""


def compare_stats_sql(granularity: str, coin_count: int, quote: Quote = USD) -> str:
    """Per coin: return over the range, volatility (standard deviation of period returns,
    and annualised), maximum drawdown (the deepest fall of a close below its running peak)."""
    return f"""
        with {_returns_cte(granularity, coin_count, quote)}
        select
            coin_id,
            count(period_return) as return_count,
            100 * (arg_max(close_price, bucket_at) / arg_min(close_price, bucket_at) - 1)
                as total_return_pct,
            100 * stddev_samp(period_return) as volatility_pct,
            100 * stddev_samp(period_return) * sqrt($periods_per_year)
                as annualised_volatility_pct,
            100 * min(close_price / peak_close - 1) as max_drawdown_pct
        from returns
        group by coin_id
        order by coin_id
    """


def correlation_sql(granularity: str, coin_count: int, quote: Quote = USD) -> str:
    """Pearson correlation of every pair's period returns, over the periods both have."""
    return f"""
        with {_returns_cte(granularity, coin_count, quote)}
        select left_side.coin_id as coin_a, right_side.coin_id as coin_b,
               corr(left_side.period_return, right_side.period_return) as correlation,
               count(*) as periods
        from returns as left_side
        inner join returns as right_side on left_side.bucket_at = right_side.bucket_at
        where left_side.period_return is not null and right_side.period_return is not null
        group by left_side.coin_id, right_side.coin_id
        order by coin_a, coin_b
    """


def _stats_params(coin_ids: tuple[str, ...], range_: Range, quote: Quote) -> dict[str, Any] | None:
    latest = as_of()
    if latest is None or not coin_ids:
        return None
    return {
        **{f"coin_{i}": coin_id for i, coin_id in enumerate(coin_ids)},
        **_quote_params(quote),
        "since": _since(RANGE_SPECS[range_].days, latest),
        "as_of": latest,
    }


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def compare_stats(coin_ids: tuple[str, ...], range_: Range, quote: Quote = USD) -> pd.DataFrame:
    """Return, volatility and maximum drawdown of each chosen coin over the range, in
    `quote` (the quote coin itself is flat there: a return of 0, no volatility)."""
    params = _stats_params(coin_ids, range_, quote)
    if params is None:
        return pd.DataFrame()
    granularity, periods = STATS_RELATIONS[range_]
    return _query(
        compare_stats_sql(granularity, len(coin_ids), quote), periods_per_year=periods, **params
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def correlations(coin_ids: tuple[str, ...], range_: Range, quote: Quote = USD) -> pd.DataFrame:
    """The correlation matrix of the chosen coins' returns over the range, as long rows (a
    coin flat in the quote, the quote coin itself, correlates with nothing: null)."""
    params = _stats_params(coin_ids, range_, quote)
    if params is None:
        return pd.DataFrame()
    return _query(correlation_sql(STATS_RELATIONS[range_][0], len(coin_ids), quote), **params)


# Compare draws up to 8 coins: at 7D, 8 x 2,016 five-minute points would be more than a chart
# carries (charts.MAX_POINTS) and took 470 ms at 90 days; hourly closes say the same there.
COMPARE_SPECS: dict[Range, RangeSpec] = {
    **RANGE_SPECS,
    "7D": RangeSpec(7, "hourly", "hourly closes"),
}


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def compare_series(coin_ids: tuple[str, ...], range_: Range, quote: Quote = USD) -> pd.DataFrame:
    """Several coins over one range, with each one's % return (in `quote`) from its first
    point."""
    frame = _series(coin_ids, range_, COMPARE_SPECS[range_], quote)
    price = quote_columns(quote)["price"]
    if frame.empty:
        return pd.DataFrame(columns=["observed_at", "coin_id", price, "rank", "return_pct"])
    return with_returns(frame.reset_index(drop=True), price)


def thinned(series: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, int]:
    """At most `limit` rows for a chart: every k-th point of each coin, its last kept (so a
    line still ends at the latest close); (frame, k), k = 1 when nothing was dropped. The
    statistics never see this: they read every bucket in SQL."""
    if len(series) <= limit:
        return series, 1
    every = -(-len(series) // limit)
    series = series.reset_index(drop=True)  # a label per row: the masks align on it
    position = series.sort_values("observed_at").groupby("coin_id").cumcount().sort_index()
    last = position == series.groupby("coin_id")["observed_at"].transform("size") - 1
    kept = series[(position % every == 0) | last]
    while len(kept) > limit:  # the kept last points can tip it over: thin once more
        every += 1
        kept = series[(position % every == 0) | last]
    return kept, every


def with_returns(series: pd.DataFrame, price: str = "price_usd") -> pd.DataFrame:
    """Add `return_pct`: each coin's price against its first price in the frame."""
    first = series.sort_values("observed_at").groupby("coin_id")[price].transform("first")
    return series.assign(return_pct=100 * (series[price] - first) / first)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def pipeline_health() -> dict[str, Any]:
    """Freshness, snapshots per day, model sizes and the last dbt results."""
    times = (
        _query(
            """
        select max(snapshot_at) as latest_snapshot_at, max(loaded_at) as latest_loaded_at,
               (select max(published_at) from ops.published) as published_at
        from prod.mart_market_overview
        """
        )
        .iloc[0]
        .to_dict()
    )
    per_day = _query(
        """
        select cast(snapshot_at as date) as day, count(*) as snapshots,
               -- the schedule gives 288 a day live; the replay gives one a day
               case when max(source) = 'replay' then 1 else $per_day end as expected
        from prod.mart_market_overview
        group by day
        order by day
        """,
        per_day=SNAPSHOTS_PER_DAY,
    )
    model_rows = _query("select model, row_count from ops.model_rows order by model")
    dbt_results = _query(
        """
        select run_at, node, resource_type, status, seconds, message
        from ops.dbt_results
        order by status in ('pass', 'success'), resource_type, node
        """
    )
    builds = _query(
        """
        select run_at, success, failed from ops.builds order by run_at desc limit 1
        """
    )
    last_pass = _query("select max(run_at) as run_at from ops.builds where success")
    dead_letters = _query(
        """
        select recorded_at, stage, source, item, reason, kept_at
        from ops.dead_letters
        order by recorded_at desc, item
        limit $limit
        """,
        limit=DEAD_LETTERS_SHOWN,
    )
    dead_letter_count = _query("select count(*) as n from ops.dead_letters")["n"].iat[0]
    audit = _query(
        """
        select run_at, check_name, status, message
        from ops.audit
        order by status = 'pass', check_name
        """
    )
    return {
        **times,
        "per_day": per_day,
        "gaps": live_gaps(),
        "model_rows": model_rows,
        "dbt_results": dbt_results,
        "last_build": builds.iloc[0].to_dict() if not builds.empty else None,
        "last_passing_build_at": last_pass["run_at"].iat[0] if not last_pass.empty else None,
        "dead_letters": dead_letters,
        "dead_letter_count": int(dead_letter_count),
        "audit": audit,
    }


def live_gaps() -> pd.DataFrame:
    """Stretches of the last 30 days with no live snapshot (an outage, a stopped schedule),
    newest first: the last snapshot before and the first after, never interpolated. The
    differences are taken here, not in SQL, where DuckDB and BigQuery spell them apart."""
    live = _query(
        f"""
        select snapshot_at
        from prod.mart_market_overview
        where source = 'coincap'
          and snapshot_at > (select max(snapshot_at) from prod.mart_market_overview)
              - interval {GAP_LOOKBACK_DAYS} day
        order by snapshot_at
        """
    )["snapshot_at"]
    gaps = pd.DataFrame({"last_before": live.shift(), "first_after": live})
    gaps["minutes_missing"] = (
        (gaps["first_after"] - gaps["last_before"]).dt.total_seconds() / 60
    ).round()
    gaps = gaps[gaps["minutes_missing"] > GAP_MINUTES]
    return gaps.sort_values("first_after", ascending=False).reset_index(drop=True)


@dataclass(frozen=True)
class FreshnessRule:
    """dbt's `freshness` of the raw source: the one definition of stale, shared with
    `dbt source freshness`."""

    warn_after_minutes: float
    error_after_minutes: float

    def status(self, age_minutes: float | None) -> Literal["pass", "warn", "error"]:
        """What `dbt source freshness` would say of data loaded `age_minutes` ago."""
        if age_minutes is None or age_minutes > self.error_after_minutes:
            return "error"
        return "warn" if age_minutes > self.warn_after_minutes else "pass"


_PERIOD_MINUTES = {"minute": 1, "hour": 60, "day": 24 * 60}


@functools.cache
def source_freshness_rule() -> FreshnessRule:
    """The raw source's freshness from `dbt/models/staging/_sources.yml`."""
    path = get_settings().dbt_project_dir / "models" / "staging" / "_sources.yml"
    source = next(s for s in yaml.safe_load(path.read_text())["sources"] if s["name"] == "coincap")
    rule = source["config"]["freshness"]

    def minutes(limit: dict[str, Any]) -> float:
        return limit["count"] * _PERIOD_MINUTES[limit["period"]]

    return FreshnessRule(minutes(rule["warn_after"]), minutes(rule["error_after"]))
