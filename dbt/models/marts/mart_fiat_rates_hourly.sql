{#- The last `/rates` value of each fiat currency in each hour: what converts a price to EUR
    or JPY. An hour is recomputed only when a rate of that hour arrived since the last run
    (a late file lands in its own hour, not the latest). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key=['symbol', 'bucket_at'],
        on_schema_change='append_new_columns',
        partition_by=partition_by_time('bucket_at', 'month'),
        cluster_by=clustering(['symbol']),
        incremental_predicates=batch_partitions_only('bucket_at'),
    )
}}

{%- set after = last_load_seq_literal('bucket_at') -%}
{%- if is_incremental() -%}
    {%- set earliest = earliest_touched_literal(ref('stg_coincap_rates'), 'rates_at', 'hour', after) -%}
{%- endif %}

with

new_rates as (

    select * from {{ ref('stg_coincap_rates') }}
    {{ loaded_since_last_run(after, 'rates_at') }}

),

touched_hours as (

    select distinct
        symbol,
        {{ dbt.date_trunc('hour', 'rates_at') }} as bucket_at
    from new_rates
    where rate_type = 'fiat'

),

hour_rates as (

    select
        touched_hours.bucket_at,
        rates.*
    from {{ ref('stg_coincap_rates') }} as rates
    inner join touched_hours
        on rates.symbol = touched_hours.symbol
            and {{ dbt.date_trunc('hour', 'rates.rates_at') }} = touched_hours.bucket_at
    where rates.rate_type = 'fiat'
    {%- if is_incremental() %}
        and rates.rates_at >= {{ earliest }}
    {%- endif %}

),

final as (

    select
        symbol,
        bucket_at,
        max(currency_symbol) as currency_symbol,
        {{ last_by('rate_usd', 'rates_at') }} as close_rate_usd,
        max(rates_at) as last_rates_at,
        count(*) as rate_count,
        max(load_seq) as load_seq

    from hour_rates
    group by symbol, bucket_at

)

select * from final
