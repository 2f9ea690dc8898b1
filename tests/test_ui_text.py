"""What the app says in words: changes, the spacing of a chart's points, and upstream text
kept as text (the browser test proves the last one end to end)."""

from __future__ import annotations

import pandas as pd
import pytest

from streamlit_app import ui

pytestmark = pytest.mark.unit


def test_no_move_is_neither_up_nor_down() -> None:
    assert [ui.pct(v) for v in (0.0, 0.004, -0.004, 0.01, -1.5)] == [
        "0.00%", "0.00%", "0.00%", "+0.01%", "-1.50%",
    ]  # fmt: skip


def test_a_chart_says_what_its_points_are() -> None:
    minutes = pd.Series(pd.date_range("2026-01-01", periods=12, freq="5min"))
    days = pd.Series(pd.date_range("2021-01-01", periods=7, freq="D"))
    assert ui.spacing(minutes, "5-minute snapshots") == "5-minute snapshots"
    assert ui.spacing(days, "5-minute snapshots").startswith("one point a day")
    assert ui.spacing(days, "hourly closes").startswith("one point a day")
    assert ui.spacing(days, "daily closes") == "daily closes"
    assert ui.spacing(days[:1], "hourly closes") == "hourly closes"
    several_coins = pd.concat([days, days, days])  # Compare's frame: one row per coin a day
    assert ui.spacing(several_coins, "hourly closes").startswith("one point a day")


@pytest.mark.parametrize(
    ("hostile", "kept"),
    [
        ("[win](http://203.0.113.9/)", "\\[win\\](http\\:\u2060//203.0.113.9/)"),
        ("![p](x.png)", "\\!\\[p\\](x.png)"),
        ("<img src=x>", "\\<img src=x>".replace(">", "\\>")),
        (":red[alarm] :material/home:", "\\:red\\[alarm\\] \\:material/home\\:"),
        ("# Heading", "\\# Heading"),
        ("- item", "\\- item"),
        ("1. first", "1\\. first"),
        ("$x^2$", "\\$x^2\\$"),
        ("see www.example.com or a@b.co", "see w\u2060ww.example.com or a@\u2060b.co"),
        ("two\nlines", "two lines"),
        ("Bitcoin (BTC)", "Bitcoin (BTC)"),
    ],
)
def test_upstream_text_cannot_become_markup(hostile: str, kept: str) -> None:
    assert ui.plain(hostile) == kept


HOSTILE = "Evil ![p](http://203.0.113.9/p.png) [win](http://203.0.113.9/) <img src=x.png>"


def test_the_prefect_movers_artifact_keeps_a_coin_name_as_text() -> None:
    """The Prefect UI renders every string cell of a table artifact as Markdown (its
    ArtifactDataTable), so the run summary's coin names are escaped like the app's."""
    from markdown_it import MarkdownIt

    from flows.core.loading import HistoryReport
    from flows.pipeline import movers_table

    mover = {
        "rank": 10, "name": HOSTILE, "symbol": "EV<b>IL</b>", "price_usd": 1.0,
        "change_24h_pct": 5.0, "volume_usd_24hr": 1e6,
    }  # fmt: skip
    (row,) = movers_table(HistoryReport(1, 1, None, [mover], []))
    html = MarkdownIt("commonmark").render(str(row["coin"]))
    assert "<a" not in html and "<img" not in html and "<b>" not in html
    assert "Evil !" in html and "EV&lt;b&gt;IL&lt;/b&gt;" in html  # shown as typed
    assert "<img" in MarkdownIt("commonmark").render(HOSTILE)  # what escaping prevents


def test_a_download_opens_formulas_as_text_and_keeps_numbers_numbers() -> None:
    """CSV injection: a coin named like a formula would run in a spreadsheet."""
    import csv
    import io

    frame = pd.DataFrame(
        {
            "name": ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "Bitcoin", None],
            "change": [-5.5, 1.0, -2.0, 0.0, 3.25, None],
        }
    )
    rows = list(csv.DictReader(io.StringIO(ui.csv_bytes(frame).decode("utf-8"))))
    assert [row["name"] for row in rows] == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "Bitcoin", ""
    ]  # fmt: skip
    assert [row["change"] for row in rows] == ["-5.5", "1.0", "-2.0", "0.0", "3.25", ""]
    assert frame["name"].iat[0].startswith("=")  # the page's own frame is left as it was
