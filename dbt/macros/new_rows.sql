{#- Incremental filters by load sequence. Every raw row carries the `load_seq` of its lake
    file: 1, 2, 3... in the order files were loaded (flows/core/loading.py), so "rows this model
    has not seen" is `load_seq > the highest it holds`. No clock is compared with anything:
    a tick on a clock hours fast or minutes slow, or a second worker with another clock,
    cannot hide a later file. The watermark is read once per run and written into the SQL
    as a literal, so DuckDB skips old row groups by their zone maps where a subquery would
    scan the whole history on every tick. BigQuery partitions by time, not load_seq: the
    recent span below is what prunes there. -#}

{#- The recent span, how those filters also prune by time. Once per build the pipeline passes
    a day and a load sequence (`BuildScope` in flows/core/loading.py):
    CRYPTOLYTICS_RECENT_SINCE, the start of the day an hour before the newest lake file, and
    CRYPTOLYTICS_RECENT_AFTER_SEQ, the highest load_seq of any file about an earlier time
    (lake_files.snapshot_at, the earliest time of a file's rows). Every file loaded after
    that sequence holds only rows at or after that day, and every row a model derives from a
    file is at or after the file's time truncated to an hour or a day, so for any N at or
    above the sequence "load_seq > N" implies "time >= the day": the second filter, a
    literal on the partition column, changes no result and lets BigQuery read a day's
    partition (two in the day's first hour) instead of the whole history (DuckDB skips row groups the same way). Loads
    and builds never overlap (the pipeline lock), so no file arrives between the two. With
    no span (dbt by hand, the audit) or N below it, the filters are by load_seq alone:
    correct, unpruned. -#}
{% macro recent_span() -%}
    {%- set since = env_var('CRYPTOLYTICS_RECENT_SINCE', '') | trim -%}
    {%- set after = env_var('CRYPTOLYTICS_RECENT_AFTER_SEQ', '') | trim -%}
    {%- if since and after.isdigit() -%}
        {{ return({'since': "timestamp '" ~ since ~ "'", 'after_seq': after | int}) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- `load_seq > after_seq`, with the recent span's time bound on `time_expr` when it holds. -#}
{% macro loaded_after(after_seq, time_expr=none) -%}
    {%- set span = recent_span() -%}
    load_seq > {{ after_seq }}
    {%- if time_expr and span and after_seq >= span.after_seq %} and {{ time_expr }} >= {{ span.since }}{% endif -%}
{%- endmacro %}

{#- The recent span's time bound on `time_expr` for rows loaded after `after_seq`, or `true`. -#}
{% macro recent_bound(after_seq, time_expr) -%}
    {%- set span = recent_span() -%}
    {%- if span and after_seq >= span.after_seq -%}
        {{ time_expr }} >= {{ span.since }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The highest `load_seq` this model holds (0 before its first run), as a literal. With a
    recent span and the model's time column, first among its recent rows only: when that
    maximum is above the span's sequence it is the model's maximum (a row loaded after the
    sequence is recent), so only a model that fell behind by more than an hour reads the
    whole column. -#}
{% macro last_load_seq_literal(time_expr=none) -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return(0) }}
    {%- endif -%}
    {%- set span = recent_span() -%}
    {%- if time_expr and span -%}
        {%- set recent = run_query(
            "select max(load_seq) from " ~ this ~ " where " ~ time_expr ~ " >= " ~ span.since
        ).columns[0].values()[0] -%}
        {%- if recent is not none and recent > span.after_seq -%}
            {{ return(recent) }}
        {%- endif -%}
    {%- endif -%}
    {%- set value = run_query("select max(load_seq) from " ~ this).columns[0].values()[0] -%}
    {{ return(value if value is not none else 0) }}
{%- endmacro %}

{#- Rows loaded after the newest load this model has already seen (`after_seq`, from
    `last_load_seq_literal` on the model's own time column): load order, not market time, so
    late and backfilled lake files flow through too. `time_expr` is the time column of the
    relation read, for the recent span's bound. -#}
{% macro loaded_since_last_run(after_seq, time_expr=none) -%}
    {%- if is_incremental() -%}
        where {{ loaded_after(after_seq, time_expr) }}
    {%- endif -%}
{%- endmacro %}

{#- The earliest `time_column` among rows of `relation` loaded after `after_seq`, truncated
    to `unit`, as a literal: buckets before it cannot have changed. With nothing new in
    `relation`, the far future: it then bounds nothing in a `least()`. -#}
{% macro earliest_touched_literal(relation, time_column, unit, after_seq) -%}
    {%- set value = none -%}
    {%- if execute and is_incremental() -%}
        {%- set value = run_query(
            "select " ~ dbt.date_trunc(unit, "min(" ~ time_column ~ ")") ~ " from " ~ relation
            ~ " where " ~ loaded_after(after_seq, time_column)
        ).columns[0].values()[0] -%}
    {%- endif -%}
    {#- nothing new in `relation`: it touches no bucket, so it sets no bound -#}
    {{ return("timestamp '9999-12-31 00:00:00'" if value is none else timestamp_literal(value)) }}
{%- endmacro %}

{#- The latest `time_column` of `relation`, exactly, as a literal (none before any row, or
    when the relation is not built yet): with a recent span, from its recent rows (when it has
    one, that is the latest). -#}
{% macro latest_literal(relation, time_column) -%}
    {%- set value = none -%}
    {%- if execute and load_relation(relation) is not none -%}
        {%- set span = recent_span() -%}
        {%- if span -%}
            {%- set value = run_query(
                "select max(" ~ time_column ~ ") from " ~ relation
                ~ " where " ~ time_column ~ " >= " ~ span.since
            ).columns[0].values()[0] -%}
        {%- endif -%}
        {%- if value is none -%}
            {%- set value = run_query(
                "select max(" ~ time_column ~ ") from " ~ relation
            ).columns[0].values()[0] -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(none if value is none else timestamp_literal(value)) }}
{%- endmacro %}

{% macro timestamp_literal(value) -%}
    {%- if value is none -%}
        {{ return("timestamp '1970-01-01 00:00:00'") }}
    {%- endif -%}
    {{ return("timestamp '" ~ value.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "'") }}
{%- endmacro %}

{#- One row: the newest snapshot (`latest_at`), then for each horizon (`at_<name>`) the newest
    snapshot at least `minutes` and at most `minutes + tolerance_minutes` before it (null when
    there is none), from a relation with one row per snapshot. With `latest` (the newest
    snapshot's time, a literal), it reads only the partitions those horizons can reach. -#}
{% macro reference_snapshots_sql(overview, horizons, latest=none) -%}
    select
        max(latest.snapshot_at) as latest_at
        {%- for horizon in horizons %},
        max(case
            when overview.snapshot_at <= {{ minutes_before('latest.snapshot_at', horizon.minutes) }}
             and overview.snapshot_at >= {{ minutes_before('latest.snapshot_at', horizon.minutes + horizon.tolerance_minutes) }}
            then overview.snapshot_at
        end) as at_{{ horizon.name }}
        {%- endfor %}
    from {{ overview }} as overview
    cross join (
        select max(snapshot_at) as snapshot_at from {{ overview }}
        {%- if latest %} where snapshot_at >= {{ latest }}{% endif %}
    ) as latest
    {%- if latest %}
    {%- set reach = horizons | map(attribute='minutes') | max + horizons | map(attribute='tolerance_minutes') | max %}
    where overview.snapshot_at >= {{ minutes_before(latest, reach) }}
    {%- endif %}
{%- endmacro %}
