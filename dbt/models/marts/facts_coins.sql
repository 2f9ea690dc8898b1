{{
    config(
        materialized='incremental',
        incremental_strategy=history_incremental_strategy(),
        unique_key=['coin_id', 'snapshot_at'],
        on_schema_change='append_new_columns',
        partition_by=partition_by_time('snapshot_at', 'day'),
        cluster_by=clustering(['coin_id']),
        incremental_predicates=batch_partitions_only('snapshot_at'),
    )
}}

{%- set after = last_load_seq_literal('snapshot_at') %}

with

staged as (

    select * from {{ ref('stg_coinsdata') }}
    {{ loaded_since_last_run(after, 'snapshot_at') }}

),

final as (

    select
        -- the columns the replaced BigQuery table had, in its order
        coin_id,
        name,
        rank,
        price_usd,
        change_percent_24hr,
        market_cap_usd,
        volume_usd_24hr,
        vwap_24hr,
        -- history
        snapshot_at,
        symbol,
        supply,
        source,
        loaded_at,
        load_seq

    from staged

)

select * from final
