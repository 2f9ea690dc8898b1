{#- Incremental filters. The watermarks are read once per run and written into the SQL as
    literals: a constant bound lets the warehouse skip old row groups (DuckDB zone maps,
    BigQuery partitions), where a subquery would scan the whole history on every tick. -#}

{#- The newest `loaded_at` this model has seen, as a timestamp literal. -#}
{% macro last_loaded_at_literal(column='loaded_at') -%}
    {%- set value = none -%}
    {%- if execute and is_incremental() -%}
        {%- set value = run_query(
            "select max(" ~ column ~ ") from " ~ this
        ).columns[0].values()[0] -%}
    {%- endif -%}
    {{ return(timestamp_literal(value)) }}
{%- endmacro %}

{#- Rows loaded after the newest load this model has already seen: `loaded_at` (load time)
    rather than market time, so late and backfilled lake files flow through too. -#}
{% macro loaded_since_last_run(column='loaded_at') -%}
    {%- if is_incremental() -%}
        where {{ column }} > {{ last_loaded_at_literal(column) }}
    {%- endif -%}
{%- endmacro %}

{#- The earliest `time_column` among rows of `relation` loaded since this model's last run,
    truncated to `unit`, as a literal: buckets before it cannot have changed. With nothing
    new in `relation`, the far future: it then bounds nothing in a `least()`. -#}
{% macro earliest_touched_literal(relation, time_column, unit) -%}
    {%- set value = none -%}
    {%- if execute and is_incremental() -%}
        {%- set value = run_query(
            "select " ~ truncate_timestamp("min(" ~ time_column ~ ")", unit) ~ " from " ~ relation
            ~ " where loaded_at > " ~ last_loaded_at_literal()
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
