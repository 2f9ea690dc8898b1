{#- Incremental filters by load sequence. Every raw row carries the `load_seq` of its lake
    file: 1, 2, 3... in the order files were loaded (flows/core/loading.py), so "rows this model
    has not seen" is `load_seq > the highest it holds`. No clock is compared with anything:
    a tick on a clock hours fast or minutes slow, or a second worker with another clock,
    cannot hide a later file. The watermark is read once per run and written into the SQL
    as a literal, so the warehouse skips old row groups (DuckDB zone maps, BigQuery
    partitions) where a subquery would scan the whole history on every tick. -#}

{#- The highest `load_seq` this model holds (0 before its first run), as a literal. -#}
{% macro last_load_seq_literal(column='load_seq') -%}
    {%- set value = none -%}
    {%- if execute and is_incremental() -%}
        {%- set value = run_query(
            "select max(" ~ column ~ ") from " ~ this
        ).columns[0].values()[0] -%}
    {%- endif -%}
    {{ return(value if value is not none else 0) }}
{%- endmacro %}

{#- Rows loaded after the newest load this model has already seen: load order, not market
    time, so late and backfilled lake files flow through too. -#}
{% macro loaded_since_last_run(column='load_seq') -%}
    {%- if is_incremental() -%}
        where {{ column }} > {{ last_load_seq_literal(column) }}
    {%- endif -%}
{%- endmacro %}

{#- The earliest `time_column` among rows of `relation` loaded since this model's last run,
    truncated to `unit`, as a literal: buckets before it cannot have changed. With nothing
    new in `relation`, the far future: it then bounds nothing in a `least()`. -#}
{% macro earliest_touched_literal(relation, time_column, unit) -%}
    {%- set value = none -%}
    {%- if execute and is_incremental() -%}
        {%- set value = run_query(
            "select " ~ dbt.date_trunc(unit, "min(" ~ time_column ~ ")") ~ " from " ~ relation
            ~ " where load_seq > " ~ last_load_seq_literal()
        ).columns[0].values()[0] -%}
    {%- endif -%}
    {#- nothing new in `relation`: it touches no bucket, so it sets no bound -#}
    {{ return("timestamp '9999-12-31 00:00:00'" if value is none else timestamp_literal(value)) }}
{%- endmacro %}

{% macro timestamp_literal(value) -%}
    {%- if value is none -%}
        {{ return("timestamp '1970-01-01 00:00:00'") }}
    {%- endif -%}
    {{ return("timestamp '" ~ value.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "'") }}
{%- endmacro %}

{#- One row: the newest snapshot (`latest_at`), then for each horizon (`at_<name>`) the newest
    snapshot at least `minutes` and at most `minutes + tolerance_minutes` before it (null when
    there is none), from a relation with one row per snapshot. -#}
{% macro reference_snapshots_sql(overview, horizons) -%}
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
    cross join (select max(snapshot_at) as snapshot_at from {{ overview }}) as latest
{%- endmacro %}
