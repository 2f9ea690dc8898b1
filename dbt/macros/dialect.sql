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
    by day or month of a timestamp (month for tables adding under ~10,000 rows a day: BigQuery
    advises against small partitions), clustering by coin. -#}
{% macro partition_by_time(column, granularity) -%}
    {{ return(adapter.dispatch('partition_by_time', 'cryptolytics')(column, granularity)) }}
{%- endmacro %}

{% macro default__partition_by_time(column, granularity) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__partition_by_time(column, granularity) -%}
    {{ return({'field': column, 'data_type': 'timestamp', 'granularity': granularity}) }}
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

{#- DuckDB's counterpart of partitioning: it skips a row group by its min and max, so only
    rows stored in time order can be skipped by time. A tick's batch is one time and lands at
    the end; a full build groups by hash and scatters every bucket over every row group (a
    90-day build of the hourly rollup made each tick's daily rollup, sparkline and duplicate
    test read all 37 of its row groups). After `select * from final`; BigQuery partitions. -#}
{% macro in_time_order(column) -%}
    {{ return(adapter.dispatch('in_time_order', 'cryptolytics')(column)) }}
{%- endmacro %}

{% macro default__in_time_order(column) -%}
    order by {{ column }}
{%- endmacro %}

{% macro bigquery__in_time_order(column) -%}
{%- endmacro %}

{#- A merge reads only the target's partitions the batch can match: at or after the batch's
    earliest `column`, found in the batch itself when the merge runs (the token is replaced
    by `bigquery__get_merge_sql` below), so a late file from last month is still matched in
    last month's partition, and an ordinary tick reads today's. Data, not the clock. -#}
{% macro batch_partitions_only(column) -%}
    {{ return(adapter.dispatch('batch_partitions_only', 'cryptolytics')(column)) }}
{%- endmacro %}

{% macro default__batch_partitions_only(column) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__batch_partitions_only(column) -%}
    {{ return(["DBT_INTERNAL_DEST." ~ column ~ " >= __batch_start__(" ~ column ~ ")"]) }}
{%- endmacro %}

{#- dbt's merge, with each `__batch_start__(column)` of the incremental predicates replaced
    by the earliest `column` of the batch (`source`, the new rows dbt staged), as a literal:
    BigQuery prunes partitions only for a constant. A batch with no rows gives the far
    future (the merge then reads no partition). dbt's own merge otherwise, unchanged. -#}
{% macro bigquery__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
    {%- set predicates = [] -%}
    {%- for predicate in incremental_predicates or [] -%}
        {%- if '__batch_start__(' in predicate -%}
            {%- set column = predicate.split('__batch_start__(')[1].split(')')[0] -%}
            {%- set start = run_query(
                'select min(' ~ column ~ ') from ' ~ source ~ ' as batch'
            ).columns[0].values()[0] -%}
            {%- set literal = "timestamp '9999-12-31 00:00:00'" if start is none else timestamp_literal(start) -%}
            {%- do predicates.append(predicate | replace('__batch_start__(' ~ column ~ ')', literal)) -%}
        {%- else -%}
            {%- do predicates.append(predicate) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(dbt.default__get_merge_sql(target, source, unique_key, dest_columns, predicates)) }}
{%- endmacro %}
