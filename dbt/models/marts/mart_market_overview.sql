{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key='snapshot_at',
        on_schema_change='append_new_columns',
        partition_by=partition_by_time('snapshot_at', 'month'),
        incremental_predicates=batch_partitions_only('snapshot_at'),
    )
}}

{%- set after = last_load_seq_literal('snapshot_at') %}

with

facts as (

    -- Every snapshot arrives whole in one lake file (one load), so the rows loaded since
    -- the last run are complete snapshots.
    select * from {{ ref('facts_coins') }}
    {{ loaded_since_last_run(after, 'snapshot_at') }}

),

per_snapshot as (

    select
        snapshot_at,
        count(*) as asset_count,
        sum(market_cap_usd) as total_market_cap_usd,
        sum(volume_usd_24hr) as total_volume_usd_24hr,
        sum(case when coin_id = 'bitcoin' then market_cap_usd end) as bitcoin_market_cap_usd,
        sum(case when coin_id = 'ethereum' then market_cap_usd end) as ethereum_market_cap_usd,
        -- the var's ids make one long compiled line (23 of them)
        sum(
            case when coin_id in ('{{ var("stablecoin_ids") | join("', '") }}') then market_cap_usd end -- noqa: LT05
        ) as stablecoin_market_cap_usd,
        max(source) as source,
        max(loaded_at) as loaded_at,
        max(load_seq) as load_seq
    from facts
    group by snapshot_at

),

final as (

    select
        snapshot_at,
        asset_count,
        total_market_cap_usd,
        total_volume_usd_24hr,
        -- null, not 0, when the coin is missing from the snapshot or no cap is known
        100 * bitcoin_market_cap_usd / nullif(total_market_cap_usd, 0) as btc_dominance_pct,
        100 * ethereum_market_cap_usd / nullif(total_market_cap_usd, 0) as eth_dominance_pct,
        -- the USD stablecoins of the project's var together; null when none is in the snapshot
        100 * stablecoin_market_cap_usd
        / nullif(total_market_cap_usd, 0) as stablecoin_dominance_pct,
        source,
        loaded_at,
        load_seq

    from per_snapshot

)

select * from final
