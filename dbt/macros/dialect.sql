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
