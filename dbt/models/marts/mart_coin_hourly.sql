{#- Hourly OHLC per coin, so long chart ranges never scan the 5-minute fact. Each run
    recomputes only the (coin, hour) buckets that received rows since the last run. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key=['coin_id', 'bucket_at'],
    )
}}

with

new_facts as (

    select coin_id, snapshot_at from {{ ref('facts_coins') }}
    {{ loaded_since_last_run() }}

),

touched_buckets as (

    select distinct
        coin_id,
        {{ truncate_timestamp('snapshot_at', 'hour') }} as bucket_at
    from new_facts

),

bucket_facts as (

    select
        touched_buckets.bucket_at,
        facts.*
    from {{ ref('facts_coins') }} as facts
    inner join touched_buckets
        on facts.coin_id = touched_buckets.coin_id
        and {{ truncate_timestamp('facts.snapshot_at', 'hour') }} = touched_buckets.bucket_at

),

final as (

    select
        coin_id,
        bucket_at,
        {{ first_by('price_usd', 'snapshot_at') }} as open_price_usd,
        max(price_usd) as high_price_usd,
        min(price_usd) as low_price_usd,
        {{ last_by('price_usd', 'snapshot_at') }} as close_price_usd,
        avg(market_cap_usd) as avg_market_cap_usd,
        count(market_cap_usd) as market_cap_count,
        {{ last_by('market_cap_usd', 'snapshot_at') }} as close_market_cap_usd,
        {{ last_by('rank', 'snapshot_at') }} as last_rank,
        {{ last_by('volume_usd_24hr', 'snapshot_at') }} as last_volume_usd_24hr,
        {{ last_by('supply', 'snapshot_at') }} as last_supply,
        count(*) as snapshot_count,
        max(snapshot_at) as last_snapshot_at,
        max(source) as source,
        max(loaded_at) as loaded_at
    from bucket_facts
    group by coin_id, bucket_at

)

select * from final
