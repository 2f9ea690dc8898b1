{{
    config(
        materialized='incremental',
        incremental_strategy=upsert_incremental_strategy(),
        unique_key='coin_id',
        on_schema_change='append_new_columns',
    )
}}

{#- one row per coin: its own watermark is a small read -#}
{%- set after = last_load_seq_literal() %}

with

new_rows as (

    select * from {{ ref('stg_coinsdata') }}
    {{ loaded_since_last_run(after, 'snapshot_at') }}

),

latest_in_batch as (

    select * from new_rows
    qualify row_number() over (
            partition by coin_id
            order by snapshot_at desc
        ) = 1

),

batch_span as (

    select
        coin_id,
        min(snapshot_at) as first_seen_at,
        max(snapshot_at) as last_seen_at,
        max(loaded_at) as loaded_at,
        max(load_seq) as load_seq
    from new_rows
    group by coin_id

),

{% if is_incremental() %}
existing as (

    select * from {{ this }}
    where coin_id in (select coin_id from batch_span)

),
{% endif %}

merged as (

    select
        batch.coin_id,
        -- A late (backfilled) file must not overwrite newer attributes: the newest snapshot wins.
        {% for attribute in ['name', 'symbol', 'explorer', 'supply', 'max_supply'] -%}
            {%- if is_incremental() -%}
        case
            when existing.last_seen_at > batch.last_seen_at then existing.{{ attribute }}
            else latest.{{ attribute }}
        end as {{ attribute }},
        {%- else -%}
                latest.{{ attribute }},
            {%- endif %}
        {% endfor -%}
        {%- if is_incremental() %}
        case
            when existing.first_seen_at < batch.first_seen_at then existing.first_seen_at
            else batch.first_seen_at
        end as first_seen_at,
        case
            when existing.last_seen_at > batch.last_seen_at then existing.last_seen_at
            else batch.last_seen_at
        end as last_seen_at,
        {%- else %}
            batch.first_seen_at,
            batch.last_seen_at,
        {%- endif %}
        batch.loaded_at,
        batch.load_seq

    from batch_span as batch
    inner join latest_in_batch as latest on batch.coin_id = latest.coin_id
    {% if is_incremental() -%}
    left join existing on existing.coin_id = batch.coin_id
    {%- endif %}

),

final as (

    select
        -- the columns the replaced BigQuery table had, in its order
        coin_id,
        name,
        symbol,
        explorer,
        supply,
        max_supply,
        -- history
        first_seen_at,
        last_seen_at,
        loaded_at,
        load_seq

    from merged

)

select * from final
