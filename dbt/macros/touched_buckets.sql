{#- The scaffold both rollups share (mart_coin_hourly from the facts, mart_coin_daily from the
    hours): which (coin, bucket) pairs received rows since this model's last run, from the
    finer model and from backfilled history, and the earliest of them, so a run recomputes
    only those buckets and reads only the row groups (partitions) that can hold them. -#}

{#- (coin_id, bucket_at) of every `unit` bucket that new rows of `finer` (its time column
    `finer_time`) or of `history` (`point_at`) fall in. -#}
{% macro touched_buckets(finer, finer_time, history, unit) -%}
    select coin_id, {{ dbt.date_trunc(unit, finer_time) }} as bucket_at
    from {{ finer }}
    {{ loaded_since_last_run() }}
    union distinct
    select coin_id, {{ dbt.date_trunc(unit, 'point_at') }} as bucket_at
    from {{ history }}
    {{ loaded_since_last_run() }}
{%- endmacro %}

{#- On an incremental run, a constant lower bound on `time_expr` for the rows of the touched
    buckets (a literal: old row groups and partitions are skipped); nothing on a full build. -#}
{% macro within_touched_buckets(time_expr, finer, finer_time, history, unit) -%}
    {%- if is_incremental() -%}
    where {{ time_expr }} >= least(
        {{ earliest_touched_literal(finer, finer_time, unit) }},
        {{ earliest_touched_literal(history, 'point_at', unit) }}
    )
    {%- endif -%}
{%- endmacro %}
