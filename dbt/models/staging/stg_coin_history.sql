with

source as (

    select * from {{ source('coincap', 'coincap_history') }}

),

renamed as (

    select
        coin_id,
        interval as history_interval,
        point_at,
        price_usd,
        circulating_supply as supply,
        source,
        lake_path,
        loaded_at,
        load_seq

    from source

)

select * from renamed
