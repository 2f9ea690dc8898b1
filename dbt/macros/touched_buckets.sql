{#- The scaffold both rollups share (mart_coin_hourly from the facts, mart_coin_daily from the
    hours): which (coin, bucket) pairs received rows since this model's last run (`after_seq`,
    its watermark), from the finer model and from backfilled history, and the earliest of
    them, so a run recomputes only those buckets and reads only the row groups (partitions)
    that can hold them. -#}

{#- (coin_id, bucket_at) of every `unit` bucket that new rows of `finer` (its time column
    `finer_time`) or of `history` (`point_at`) fall in. -#}
{% macro touched_buckets(finer, finer_time, history, unit, after_seq) -%}
    select coin_id, {{ dbt.date_trunc(unit, finer_time) }} as bucket_at
    from {{ finer }}
    {{ loaded_since_last_run(after_seq, finer_time) }}
    union distinct
    select coin_id, {{ dbt.date_trunc(unit, 'point_at') }} as bucket_at
    from {{ history }}
    {{ loaded_since_last_run(after_seq, 'point_at') }}
{%- endmacro %}

{#- The earliest bucket touched, as one literal: the rows of the touched buckets are at or
    after it, so it bounds their reads (old row groups and partitions are skipped). Two
    queries: a model calls it once. -#}
{% macro earliest_touched(finer, finer_time, history, unit, after_seq) -%}
    {%- set from_finer = earliest_touched_literal(finer, finer_time, unit, after_seq) -%}
    {%- set from_history = earliest_touched_literal(history, 'point_at', unit, after_seq) -%}
    {{ return(from_finer if from_finer < from_history else from_history) }}
{%- endmacro %}
