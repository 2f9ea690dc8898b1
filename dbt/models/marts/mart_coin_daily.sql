{#- Daily OHLC per coin, rolled up from the hourly buckets (24 rows per coin and day, not 288).
    Each run recomputes only the days whose hours changed since the last run. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key=['coin_id', 'bucket_at'],
    )
}}

with

new_hours as (

    select coin_id, bucket_at from {{ ref('mart_coin_hourly') }}
    {{ loaded_since_last_run() }}

),

touched_days as (

    select distinct
        coin_id,
        {{ truncate_timestamp('bucket_at', 'day') }} as bucket_at
    from new_hours

),

day_hours as (

    select
        touched_days.bucket_at as day_at,
        hourly.*
    from {{ ref('mart_coin_hourly') }} as hourly
    inner join touched_days
        on hourly.coin_id = touched_days.coin_id
        and {{ truncate_timestamp('hourly.bucket_at', 'day') }} = touched_days.bucket_at

),

final as (

    select
        coin_id,
        day_at as bucket_at,
        {{ first_by('open_price_usd', 'bucket_at') }} as open_price_usd,
        max(high_price_usd) as high_price_usd,
        min(low_price_usd) as low_price_usd,
        {{ last_by('close_price_usd', 'bucket_at') }} as close_price_usd,
        -- weighted by snapshots, so it equals the average over the day's 5-minute rows
        sum(avg_market_cap_usd * market_cap_count) / nullif(sum(market_cap_count), 0)
            as avg_market_cap_usd,
        sum(market_cap_count) as market_cap_count,
        {{ last_by('close_market_cap_usd', 'bucket_at') }} as close_market_cap_usd,
        {{ last_by('last_rank', 'bucket_at') }} as last_rank,
        {{ last_by('last_volume_usd_24hr', 'bucket_at') }} as last_volume_usd_24hr,
        {{ last_by('last_supply', 'bucket_at') }} as last_supply,
        sum(snapshot_count) as snapshot_count,
        max(last_snapshot_at) as last_snapshot_at,
        max(source) as source,
        max(loaded_at) as loaded_at
    from day_hours
    group by coin_id, day_at

)

select * from final
