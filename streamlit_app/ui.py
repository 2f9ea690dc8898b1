"""What every page shares: the data-source banner, the empty state, number formatting,
plain text for upstream strings, and URL state that is checked, never trusted."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

import pandas as pd
import streamlit as st

from flows.core.text import plain as plain  # the pages write ui.plain
from streamlit_app import data


def page_start(title: str) -> bool:
    """Title, then the replay banner or the empty state. False: nothing to show yet."""
    st.title(title)
    if not data.has_data():
        st.info(
            "No data yet. The pipeline publishes its first snapshot a few seconds after "
            "`make up` starts; this page fills in on its own within a minute."
        )
        return False
    source = data.data_source()
    if source["latest_source"] == "replay":
        st.warning(
            f"**Replay, not live data.** These are real daily market data from "
            f"{_day(source['replay_from'])} to {_day(source['replay_to'])} (CoinGecko), "
            "replayed one day per pipeline run because no CoinCap API key is set.",
            icon=":material/history:",
        )
    return True


REPLAY_HAS_NO_INTRADAY = (
    "The daily replay has one snapshot a day, so it cannot fill what needs intraday "
    "snapshots: the 1h change and the 1D range. A live source (a CoinCap API key) takes one "
    "every 5 minutes and fills both."
)


def replaying() -> bool:
    """True when the latest snapshot is replayed (daily) data."""
    return bool(data.data_source()["latest_source"] == "replay")


def too_few_points(range_: str, what: str) -> None:
    """Why a range has nothing to draw, truthfully: on the replay, 1D never fills."""
    if range_ == "1D" and replaying():
        st.info(f"{REPLAY_HAS_NO_INTRADAY} Try 7D or longer.")
    else:
        st.info(f"{what} Try a longer range, or come back after a few more pipeline runs.")


def _day(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


def usd(value: float | None, compact: bool = True) -> str:
    """$1.23T, $45.6B, $7.89M; plain dollars below a million."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if compact:
        for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
            if abs(value) >= limit:
                return f"${value / limit:,.2f}{suffix}"
    return f"${value:,.0f}"


def price(value: float | None, unit: str = "USD") -> str:
    """Enough decimals to see a micro-cap price move, no more than a large one needs:
    $0.001234, or 0.00001234 BTC in another quote."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1 or value <= 0:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.{max(2, -math.floor(math.log10(value)) + 3)}f}"
    return f"${text}" if unit == "USD" else f"{text} {unit}"


def money(value: float | None, unit: str = "USD") -> str:
    """A market cap or volume: compact dollars, or a coin amount (a small cap in BTC is a
    few units, which compact dollars' rounding would lose)."""
    if unit == "USD" or value is None or (isinstance(value, float) and math.isnan(value)):
        return usd(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= limit:
            return f"{value / limit:,.2f}{suffix} {unit}"
    return f"{value:,.{2 if abs(value) >= 1 else 6}f} {unit}"


def pct(value: float | None) -> str:
    """+1.23% / -4.56%, 0.00% unsigned (no move is neither up nor down), and an em dash
    when there is no value (too little history)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if round(value, 2) == 0:
        return "0.00%"
    return f"{value:+.2f}%"


def spacing(observed_at: pd.Series, granularity: str) -> str:
    """What the points of a chart are, from their own spacing: the range's granularity
    ('5-minute snapshots', 'hourly closes') unless the data are sparser (the daily replay)."""
    moments = pd.Series(observed_at).drop_duplicates()  # Compare: several coins a moment
    if len(moments) < 2:
        return granularity
    step = moments.sort_values().diff().median()
    if step >= pd.Timedelta(hours=20) and not granularity.startswith("daily"):
        return "one point a day (the data hold no finer one here)"
    if step >= pd.Timedelta(minutes=50) and granularity.startswith("5-minute"):
        return "about one point an hour"
    return granularity


def age(moment: Any) -> str:
    """How long ago, in words: '3 min ago', '2 h ago', '1,791 days ago'."""
    if moment is None or pd.isna(moment):
        return "never"
    then = (
        pd.Timestamp(moment).tz_localize(UTC)
        if pd.Timestamp(moment).tzinfo is None
        else pd.Timestamp(moment)
    )
    seconds = (datetime.now(tz=UTC) - then.to_pydatetime()).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:,.0f} days ago"


def minutes_since(moment: Any) -> float | None:
    if moment is None or pd.isna(moment):
        return None
    then = (
        pd.Timestamp(moment).tz_localize(UTC)
        if pd.Timestamp(moment).tzinfo is None
        else pd.Timestamp(moment)
    )
    return (datetime.now(tz=UTC) - then.to_pydatetime()).total_seconds() / 60


MAX_PARAM_CHARS = 500  # no coin id or list of 8 is longer; a longer value is not ours


def link_notice(message: str) -> None:
    """One sentence on what a shared link asked for and did not get (already plain)."""
    st.info(message, icon=":material/link_off:")


def query_param(name: str, default: str) -> str:
    """A URL parameter, or `default` (said on the page) when it is too long to be ours."""
    value = st.query_params.get(name, default)
    if len(value) > MAX_PARAM_CHARS:
        link_notice(
            f"The link's `{name}` value is {len(value):,} characters long (at most "
            f"{MAX_PARAM_CHARS}): ignored, showing the default."
        )
        return default
    return value


def pick_range(default: data.Range) -> data.Range:
    """The range buttons, kept in the URL (`?range=1M`) so a view can be shared; an unknown
    range in a link is said, then replaced by the default."""
    return cast(data.Range, pick_choice("range", data.RANGES, default, "Range"))


def pick_quote(default: str = "USD") -> data.Quote:
    """The quote currency, kept in the URL (`?quote=BTC`, `?quote=EUR`): USD; BTC and ETH
    while we hold their prices; the fiat currencies of the latest live `/rates` (none on the
    replay). A currency the link names and we cannot convert to is said, then USD is shown."""
    held = set(data.coins()["coin_id"])
    quotes = [q for q in data.QUOTES.values() if q.coin_id is None or q.coin_id in held]
    quotes += list(data.fiat_quotes())
    by_code = {quote.code: quote for quote in quotes}
    wanted = query_param("quote", default)
    if wanted not in by_code:
        link_notice(
            f"The link's quote “{plain(wanted[:40])}” is not a currency we can show prices "
            f"in here ({', '.join(list(by_code)[:3])}"
            + (f" or one of {len(by_code) - 3} fiat currencies" if len(by_code) > 3 else "")
            + f"): showing {default}."
        )
        wanted = default
    codes = list(by_code)
    chosen = st.selectbox("Prices in", codes, index=codes.index(wanted), key="quote")
    st.query_params["quote"] = chosen
    return by_code[chosen]


def coin_link(coin_ids: pd.Series) -> pd.Series:
    """Each coin's page (a relative link, with the id URL-encoded: ids are upstream text)."""
    return coin_ids.map(lambda coin_id: f"coin?coin={quote(str(coin_id), safe='')}")


COIN_LINK_COLUMN = st.column_config.LinkColumn("Page", display_text="open", width="small")

# A cell a spreadsheet would run as a formula (OWASP's CSV injection list): coin names are
# upstream text, so one named "=HYPERLINK(...)" must open as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV, text cells that start like a formula quoted with a '."""
    safe = frame.copy()
    for column in safe.columns:
        # object or pandas' string dtype: where text lives (numbers are written as numbers)
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(
                lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_STARTS) else v
            )
    return safe.to_csv(index=False).encode("utf-8")


def download_csv(frame: pd.DataFrame, name: str) -> None:
    """The data behind a chart or table, as the page shows it: `name`.csv."""
    download(csv_bytes(frame), f"{name}.csv", "text/csv", "Download CSV")


def download(content: bytes, file_name: str, mime: str, label: str) -> None:
    st.download_button(
        label,
        content,
        file_name=f"cryptolytics-{file_name}",
        mime=mime,
        icon=":material/download:",
        key=f"download-{file_name}",
        on_click="ignore",  # a download is no reason to rerun the page
    )


def pick_choice(name: str, options: tuple[Any, ...], default: Any, label: str) -> Any:
    """A segmented choice kept in the URL; a value the link made up is said, then dropped."""
    wanted = query_param(name, str(default))
    by_text = {str(option): option for option in options}
    if wanted not in by_text:
        link_notice(
            f"The link's {name} “{plain(wanted[:40])}” is not one of "
            f"{', '.join(by_text)}: showing {default}."
        )
        wanted = str(default)
    chosen = st.segmented_control(label, options, default=by_text[wanted], key=name)
    chosen = default if chosen is None else chosen
    st.query_params[name] = str(chosen)
    return chosen
