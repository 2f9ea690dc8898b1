"""Pipeline health: source freshness (dbt's rule), the last build (also when it failed and
publishing is held), dead letters, the scheduled audit, snapshots per day, gaps in the live
feed, model sizes, dbt results, source. Upstream text (reasons, names) only ever appears in
tables, as plain text."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from streamlit_app import charts, data, ui


def freshness(health: dict) -> None:
    minutes = ui.minutes_since(health["latest_loaded_at"])
    rule = data.source_freshness_rule()
    cols = st.columns(2)
    cols[0].metric("Last load", ui.age(health["latest_loaded_at"]))
    cols[1].metric("Published for this app", ui.age(health["published_at"]))
    latest = pd.Timestamp(health["latest_snapshot_at"]).strftime("%Y-%m-%d %H:%M UTC")
    st.caption(
        f"Latest snapshot (market time): **{latest}**, {ui.age(health['latest_snapshot_at'])}."
    )
    limits = (
        f"dbt source freshness: warn after {rule.warn_after_minutes:.0f} min, "
        f"error after {rule.error_after_minutes:.0f} min; the schedule runs every "
        f"{data.SCHEDULE_MINUTES} minutes"
    )
    status = rule.status(minutes)
    if status == "pass":
        st.success(f"**Fresh** (pass): last load {ui.age(health['latest_loaded_at'])} ({limits}).")
    else:
        (st.warning if status == "warn" else st.error)(
            f"**Stale** ({status}): last load {ui.age(health['latest_loaded_at'])} ({limits}). "
            "Check the Prefect UI for failed or missing runs."
        )


def gaps(frame: pd.DataFrame) -> None:
    st.subheader("Gaps in the live feed")
    window = f"the last {data.GAP_LOOKBACK_DAYS} days"
    if frame.empty:
        st.write(
            f"No gap longer than {data.GAP_MINUTES} minutes between live snapshots in {window}."
        )
        return
    longest = frame["minutes_missing"].max()
    st.warning(
        f"{len(frame)} gap(s) in {window}, the longest {longest / 60:.1f} h: no snapshot "
        "was taken then, and none is made up (CoinCap keeps no past `/assets` snapshots; "
        "the backfill flow can add the hourly prices)."
    )
    table(frame)


def source_info() -> None:
    source = data.data_source()
    if source["latest_source"] == "replay":
        st.write(
            f"**Source: replay** of bundled real 2021 market data (CoinGecko), "
            f"{source['replay_snapshots']:,} day(s) replayed so far, "
            f"{pd.Timestamp(source['replay_from']):%Y-%m-%d} to "
            f"{pd.Timestamp(source['replay_to']):%Y-%m-%d}."
        )
    else:
        st.write("**Source: live CoinCap API** (rest.coincap.io/v3).")


def last_build(health: dict) -> None:
    build = health["last_build"]
    if build is None:
        return
    when = pd.Timestamp(build["run_at"]).strftime("%Y-%m-%d %H:%M UTC")
    if bool(build["success"]):
        st.success(f"Last build {when}: passed; this app shows its models.")
        return
    passed = health["last_passing_build_at"]
    since = (
        f"as of the last passing build, {pd.Timestamp(passed):%Y-%m-%d %H:%M UTC}"
        if passed is not None and not pd.isna(passed)
        else "as last published"
    )
    st.error(
        f"**Publishing is held**: the build of {when} failed, so this app shows the models "
        f"{since}. The failing nodes are listed under *Last dbt build* below; the next "
        "passing build publishes everything loaded since."
    )


# Every table on this page with words for headers, times to the second, seconds to a
# hundredth and an empty cell (not "None") where there is nothing
_TIME = "YYYY-MM-DD HH:mm:ss"
COLUMNS = {
    "last_before": st.column_config.DatetimeColumn("Last snapshot before", format=_TIME),
    "first_after": st.column_config.DatetimeColumn("First snapshot after", format=_TIME),
    "minutes_missing": st.column_config.NumberColumn("Minutes missing", format="%d"),
    "recorded_at": st.column_config.DatetimeColumn("Recorded", format=_TIME),
    "stage": st.column_config.TextColumn("Stage"),
    "source": st.column_config.TextColumn("Source"),
    "item": st.column_config.TextColumn("Item"),
    "reason": st.column_config.TextColumn("Reason", width="large"),
    "kept_at": st.column_config.TextColumn("Kept at"),
    "check_name": st.column_config.TextColumn("Check"),
    "status": st.column_config.TextColumn("Status"),
    "message": st.column_config.TextColumn("Message", width="large"),
    "node": st.column_config.TextColumn("Node"),
    "resource_type": st.column_config.TextColumn("Type"),
    "seconds": st.column_config.NumberColumn("Seconds", format="%.2f"),
    "model": st.column_config.TextColumn("Model"),
    "row_count": st.column_config.NumberColumn("Rows", format="localized"),
}


def table(frame: pd.DataFrame) -> None:
    """A health table as the page shows them all (see COLUMNS)."""
    text = frame.select_dtypes(["object", "string"]).columns
    shown = frame.assign(**{column: frame[column].fillna("") for column in text})  # no "None"
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={k: v for k, v in COLUMNS.items() if k in frame},
    )


def dead_letters(health: dict) -> None:
    st.subheader("Dead letters")
    frame, count = health["dead_letters"], health["dead_letter_count"]
    if frame.empty:
        st.write("Nothing refused: every fetched body, lake file and row was loaded.")
        return
    shown = f", the newest {len(frame)} below" if count > len(frame) else ""
    st.warning(
        f"{count:,} item(s) refused by a stage{shown}. Each went to the lake's quarantine "
        "(or was left out of its snapshot) with its reason; the pipeline went on without it."
    )
    table(frame)


def audit(frame: pd.DataFrame) -> None:
    st.subheader("Audit (whole tables, scheduled)")
    if frame.empty:
        st.write("No audit has run yet (the `audit` deployment runs it daily).")
        return
    failing = frame[frame["status"] != "pass"]
    when = pd.Timestamp(frame["run_at"].max()).strftime("%Y-%m-%d %H:%M UTC")
    if failing.empty:
        st.success(f"{when}: all {len(frame)} checks passed.")
    else:
        st.error(
            f"{when}: {len(failing)} of {len(frame)} checks failed. They do not hold ticks "
            "(which test only what they add); fix the rows or the lake files they name."
        )
    table(frame.drop(columns=["run_at"]))


def dbt_results(results: pd.DataFrame) -> None:
    st.subheader("Last dbt build")
    if results.empty:
        st.write("No dbt results recorded yet.")
        return
    counts = results["status"].value_counts()
    failing = results[~results["status"].isin(["pass", "success"])]
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    when = pd.Timestamp(results["run_at"].iat[0]).strftime("%Y-%m-%d %H:%M UTC")
    (st.error if not failing.empty else st.success)(f"{when}: {summary}.")
    table(results.drop(columns=["run_at"]))


if ui.page_start("Pipeline health"):
    health = data.pipeline_health()
    freshness(health)
    last_build(health)
    source_info()
    if not health["per_day"].empty:
        st.altair_chart(charts.snapshots_per_day_chart(health["per_day"]), width="stretch")
    gaps(health["gaps"])
    dead_letters(health)
    audit(health["audit"])
    st.subheader("Rows per model")
    table(health["model_rows"])
    dbt_results(health["dbt_results"])
