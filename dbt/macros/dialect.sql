{#- Dialect gaps between DuckDB (local) and BigQuery (cloud), one macro each. -#}

{#- A timestamp `minutes` minutes earlier: dbt's own `dateadd`, except on BigQuery, where
    `dbt.dateadd` returns a DATETIME, which BigQuery will not compare with a TIMESTAMP. -#}
{% macro minutes_before(timestamp_expr, minutes) -%}
    {{ return(adapter.dispatch('minutes_before', 'cryptolytics')(timestamp_expr, minutes)) }}
{%- endmacro %}

{% macro default__minutes_before(timestamp_expr, minutes) -%}
    {{ dbt.dateadd('minute', -minutes, timestamp_expr) }}
{%- endmacro %}

{% macro bigquery__minutes_before(timestamp_expr, minutes) -%}
    timestamp_sub({{ timestamp_expr }}, interval {{ minutes }} minute)
{%- endmacro %}

{#- How an append-only history model adds a batch. Rows reach it exactly once (the loader
    keeps a manifest of lake files), so DuckDB appends; BigQuery has no append strategy and
    merges on the model's unique key. -#}
{% macro history_incremental_strategy() -%}
    {{ return(adapter.dispatch('history_incremental_strategy', 'cryptolytics')()) }}
{%- endmacro %}

{% macro default__history_incremental_strategy() -%}
    {{ return('append') }}
{%- endmacro %}

{% macro bigquery__history_incremental_strategy() -%}
    {{ return('merge') }}
{%- endmacro %}

{#- How a model whose rows change in place (one row per coin, per snapshot) upserts. -#}
{% macro upsert_incremental_strategy() -%}
    {{ return(adapter.dispatch('upsert_incremental_strategy', 'cryptolytics')()) }}
{%- endmacro %}

{% macro default__upsert_incremental_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{% macro bigquery__upsert_incremental_strategy() -%}
    {{ return('merge') }}
{%- endmacro %}

{#- The value at the earliest / latest `order_expr` of a group (open and close prices). -#}
{% macro first_by(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('first_by', 'cryptolytics')(value_expr, order_expr)) }}
{%- endmacro %}

{% macro default__first_by(value_expr, order_expr) -%}
    arg_min({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{#- min_by/max_by, like DuckDB's arg_min/arg_max: a null value at the first or last time
    stays null (a history point has no rank) rather than falling back to an older one. -#}
{% macro bigquery__first_by(value_expr, order_expr) -%}
    min_by({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{% macro last_by(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('last_by', 'cryptolytics')(value_expr, order_expr)) }}
{%- endmacro %}

{% macro default__last_by(value_expr, order_expr) -%}
    arg_max({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{% macro bigquery__last_by(value_expr, order_expr) -%}
    max_by({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{#- The values of a group as an array, in order (sparklines). -#}
{% macro ordered_array(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('ordered_array', 'cryptolytics')(value_expr, order_expr)) }}
{%- endmacro %}

{% macro default__ordered_array(value_expr, order_expr) -%}
    list({{ value_expr }} order by {{ order_expr }})
{%- endmacro %}

{% macro bigquery__ordered_array(value_expr, order_expr) -%}
    array_agg({{ value_expr }} ignore nulls order by {{ order_expr }})
{%- endmacro %}

{#- Table layout, BigQuery only (DuckDB has neither; zone maps do the job there): partitions
    by day of a timestamp, clustering by coin. -#}
{% macro partition_by_day(column) -%}
    {{ return(adapter.dispatch('partition_by_day', 'cryptolytics')(column)) }}
{%- endmacro %}

{% macro default__partition_by_day(column) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__partition_by_day(column) -%}
    {{ return({'field': column, 'data_type': 'timestamp', 'granularity': 'day'}) }}
{%- endmacro %}

{% macro clustering(columns) -%}
    {{ return(adapter.dispatch('clustering', 'cryptolytics')(columns)) }}
{%- endmacro %}

{% macro default__clustering(columns) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__clustering(columns) -%}
    {{ return(columns) }}
{%- endmacro %}

{#- The merge of an append-only history model compares new rows only with the target's
    recent partitions, so a tick does not scan years of history. Safe because rows reach
    the model exactly once (the loader's manifest, then `loaded_since_last_run`): an older
    row, from a late or backfilled file, cannot be in the target yet and is inserted. -#}
{% macro recent_partitions_only(column, days=2) -%}
    {{ return(adapter.dispatch('recent_partitions_only', 'cryptolytics')(column, days)) }}
{%- endmacro %}

{% macro default__recent_partitions_only(column, days) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__recent_partitions_only(column, days) -%}
    {{ return(["DBT_INTERNAL_DEST." ~ column ~ " >= timestamp_sub(current_timestamp(), interval " ~ days ~ " day)"]) }}
{%- endmacro %}
