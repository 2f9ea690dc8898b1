{#- Daily OHLC per coin, rolled up from the hourly buckets (24 rows per coin and day, not
    288). Days with no hour at all (before our snapshots began) come from backfilled daily
    history points, so each coin has one series, never two. Each run recomputes only the
    days that changed since the last run. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key=['coin_id', 'bucket_at'],
        on_schema_change='append_new_columns',
        partition_by=partition_by_time('bucket_at', 'month'),
        cluster_by=clustering(['coin_id']),
        incremental_predicates=batch_partitions_only('bucket_at'),
    )
}}

{%- set after = last_load_seq_literal('bucket_at') -%}
{%- if is_incremental() -%}
    {%- set earliest = earliest_touched(
        ref('mart_coin_hourly'), 'bucket_at', ref('stg_coin_history'), 'day', after
    ) -%}
{%- endif %}

with

touched_days as (

    {{ touched_buckets(
        ref('mart_coin_hourly'), 'bucket_at', ref('stg_coin_history'), 'day', after
    ) }}

),

day_hours as (

    select
        touched_days.bucket_at as day_at,
        hourly.*
    from {{ ref('mart_coin_hourly') }} as hourly
    inner join touched_days
        on hourly.coin_id = touched_days.coin_id
            and {{ dbt.date_trunc('day', 'hourly.bucket_at') }} = touched_days.bucket_at
    {% if is_incremental() -%}
    where hourly.bucket_at >= {{ earliest }}
    {%- endif %}

),

day_history as (

    select
        touched_days.bucket_at as day_at,
        history.*
    from {{ ref('stg_coin_history') }} as history
    inner join touched_days
        on history.coin_id = touched_days.coin_id
            and {{ dbt.date_trunc('day', 'history.point_at') }} = touched_days.bucket_at
    where history.history_interval = 'd1'
        {% if is_incremental() -%}
        and history.point_at >= {{ earliest }}
        {%- endif %}
        -- finer data wins: a day with any hour is built from its hours
        and not exists (
            select 1 from day_hours
            where day_hours.coin_id = history.coin_id and day_hours.day_at = touched_days.bucket_at
        )
    qualify row_number() over (
            partition by history.coin_id, history.point_at
            order by history.load_seq desc
        ) = 1

),

from_hours as (

    select
        coin_id,
        day_at as bucket_at,
        {{ first_by('open_price_usd', 'bucket_at') }} as open_price_usd,
        max(high_price_usd) as high_price_usd,
        min(low_price_usd) as low_price_usd,
        {{ last_by('close_price_usd', 'bucket_at') }} as close_price_usd,
        -- weighted by points, so it equals the average over the day's 5-minute rows
        sum(avg_market_cap_usd * market_cap_count) / nullif(sum(market_cap_count), 0)
            as avg_market_cap_usd,
        sum(market_cap_count) as market_cap_count,
        {{ last_by('close_market_cap_usd', 'bucket_at') }} as close_market_cap_usd,
        {{ last_by('last_rank', 'bucket_at') }} as last_rank,
        {{ last_by('last_volume_usd_24hr', 'bucket_at') }} as last_volume_usd_24hr,
        {{ last_by('last_supply', 'bucket_at') }} as last_supply,
        sum(snapshot_count) as snapshot_count,
        max(last_snapshot_at) as last_snapshot_at,
        max(origin) as origin,
        max(source) as source,
        max(loaded_at) as loaded_at,
        max(load_seq) as load_seq
    from day_hours
    group by coin_id, day_at

),

from_history as (

    -- normally one d1 point a day; if the API sends finer points, they make the day's OHLC
    select
        coin_id,
        day_at as bucket_at,
        {{ first_by('price_usd', 'point_at') }} as open_price_usd,
        max(price_usd) as high_price_usd,
        min(price_usd) as low_price_usd,
        {{ last_by('price_usd', 'point_at') }} as close_price_usd,
        avg(price_usd * supply) as avg_market_cap_usd,
        count(price_usd * supply) as market_cap_count,
        {{ last_by('price_usd * supply', 'point_at') }} as close_market_cap_usd,
        cast(null as integer) as last_rank,
        cast(null as double) as last_volume_usd_24hr,
        {{ last_by('supply', 'point_at') }} as last_supply,
        count(*) as snapshot_count,
        max(point_at) as last_snapshot_at,
        'history' as origin,
        max(source) as source,
        max(loaded_at) as loaded_at,
        max(load_seq) as load_seq
    from day_history
    group by coin_id, day_at

),

final as (

    select * from from_hours
    union all
    select * from from_history

)

select * from final
{{ in_time_order('bucket_at') }}
