{#- The incremental filter the history models share: rows loaded after the newest load this
    model has already seen. `loaded_at` (load time) rather than `snapshot_at` (market time),
    so late and backfilled lake files flow through too. -#}
{% macro loaded_since_last_run(column='loaded_at') -%}
    {%- if is_incremental() -%}
        where {{ column }} > (
            select coalesce(max({{ column }}), timestamp '1970-01-01 00:00:00') from {{ this }}
        )
    {%- endif -%}
{%- endmacro %}
