{#- Hourly OHLC per coin, so long chart ranges never scan the 5-minute fact. Snapshots and
    backfilled m5/h1 history describe the same prices: an hour with any snapshot is built
    from snapshots only, an hour without one from history points, so nothing is counted
    twice. Each run recomputes only the (coin, hour) buckets that received rows since the
    last run. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key=['coin_id', 'bucket_at'],
        on_schema_change='append_new_columns',
        partition_by=partition_by_time('bucket_at', 'day'),
        cluster_by=clustering(['coin_id']),
        incremental_predicates=batch_partitions_only('bucket_at'),
    )
}}

{%- set after = last_load_seq_literal('bucket_at') -%}
{%- if is_incremental() -%}
    {%- set earliest = earliest_touched(
        ref('facts_coins'), 'snapshot_at', ref('stg_coin_history'), 'hour', after
    ) -%}
{%- endif %}

with

touched_buckets as (

    {{ touched_buckets(ref('facts_coins'), 'snapshot_at', ref('stg_coin_history'), 'hour', after) }}

),

bucket_facts as (

    select
        touched_buckets.bucket_at,
        facts.*
    from {{ ref('facts_coins') }} as facts
    inner join touched_buckets
        on facts.coin_id = touched_buckets.coin_id
            and {{ dbt.date_trunc('hour', 'facts.snapshot_at') }} = touched_buckets.bucket_at
    {% if is_incremental() -%}
    where facts.snapshot_at >= {{ earliest }}
    {%- endif %}

),

bucket_history as (

    select
        touched_buckets.bucket_at,
        history.*
    from {{ ref('stg_coin_history') }} as history
    inner join touched_buckets
        on history.coin_id = touched_buckets.coin_id
            and {{ dbt.date_trunc('hour', 'history.point_at') }} = touched_buckets.bucket_at
    where history.history_interval in ('m5', 'h1')
        {% if is_incremental() -%}
        and history.point_at >= {{ earliest }}
        {%- endif %}
        -- prefer snapshots: history fills only the hours no snapshot covers
        and not exists (
            select 1 from bucket_facts
            where bucket_facts.coin_id = history.coin_id
                and bucket_facts.bucket_at = touched_buckets.bucket_at
        )
    -- overlapping backfill windows: one point per coin and time
    qualify row_number() over (
            partition by history.coin_id, history.point_at
            order by history.load_seq desc
        ) = 1

),

points as (

    select
        coin_id,
        bucket_at,
        snapshot_at as observed_at,
        price_usd,
        market_cap_usd,
        rank,
        volume_usd_24hr,
        supply,
        source,
        loaded_at,
        load_seq,
        'snapshot' as origin
    from bucket_facts
    union all
    select
        coin_id,
        bucket_at,
        point_at as observed_at,
        price_usd,
        price_usd * supply as market_cap_usd,
        null as rank,
        null as volume_usd_24hr,
        supply,
        source,
        loaded_at,
        load_seq,
        'history' as origin
    from bucket_history

),

final as (

    select
        coin_id,
        bucket_at,
        {{ first_by('price_usd', 'observed_at') }} as open_price_usd,
        max(price_usd) as high_price_usd,
        min(price_usd) as low_price_usd,
        {{ last_by('price_usd', 'observed_at') }} as close_price_usd,
        avg(market_cap_usd) as avg_market_cap_usd,
        count(market_cap_usd) as market_cap_count,
        {{ last_by('market_cap_usd', 'observed_at') }} as close_market_cap_usd,
        {{ last_by('rank', 'observed_at') }} as last_rank,
        {{ last_by('volume_usd_24hr', 'observed_at') }} as last_volume_usd_24hr,
        {{ last_by('supply', 'observed_at') }} as last_supply,
        count(*) as snapshot_count,
        max(observed_at) as last_snapshot_at,
        max(origin) as origin,
        max(source) as source,
        max(loaded_at) as loaded_at,
        max(load_seq) as load_seq
    from points
    group by coin_id, bucket_at

)

select * from final
{{ in_time_order('bucket_at') }}
