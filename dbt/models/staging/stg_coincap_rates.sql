with

source as (

    select * from {{ source('coincap', 'coincap_rates') }}

),

renamed as (

    select
        rates_at,
        id as rate_id,
        symbol,
        currency_symbol,
        type as rate_type,
        rate_usd,
        source,
        lake_path,
        loaded_at,
        load_seq

    from source

)

select * from renamed
