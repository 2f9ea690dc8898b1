{#- Dialect gaps between DuckDB (local) and BigQuery (cloud), one macro each. -#}

{#- A timestamp `minutes` minutes earlier. -#}
{% macro minutes_before(timestamp_expr, minutes) -%}
    {{ return(adapter.dispatch('minutes_before', 'cryptolytics')(timestamp_expr, minutes)) }}
{%- endmacro %}

{% macro default__minutes_before(timestamp_expr, minutes) -%}
    ({{ timestamp_expr }} - interval ({{ minutes }}) minute)
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

{#- A timestamp truncated to the start of its hour or day. -#}
{% macro truncate_timestamp(timestamp_expr, unit) -%}
    {{ return(adapter.dispatch('truncate_timestamp', 'cryptolytics')(timestamp_expr, unit)) }}
{%- endmacro %}

{% macro default__truncate_timestamp(timestamp_expr, unit) -%}
    date_trunc('{{ unit }}', {{ timestamp_expr }})
{%- endmacro %}

{% macro bigquery__truncate_timestamp(timestamp_expr, unit) -%}
    timestamp_trunc({{ timestamp_expr }}, {{ unit }})
{%- endmacro %}

{#- The value at the earliest / latest `order_expr` of a group (open and close prices). -#}
{% macro first_by(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('first_by', 'cryptolytics')(value_expr, order_expr)) }}
{%- endmacro %}

{% macro default__first_by(value_expr, order_expr) -%}
    arg_min({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{% macro bigquery__first_by(value_expr, order_expr) -%}
    array_agg({{ value_expr }} ignore nulls order by {{ order_expr }} limit 1)[safe_offset(0)]
{%- endmacro %}

{% macro last_by(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('last_by', 'cryptolytics')(value_expr, order_expr)) }}
{%- endmacro %}

{% macro default__last_by(value_expr, order_expr) -%}
    arg_max({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{% macro bigquery__last_by(value_expr, order_expr) -%}
    array_agg({{ value_expr }} ignore nulls order by {{ order_expr }} desc limit 1)[safe_offset(0)]
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
