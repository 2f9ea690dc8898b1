with

source as (

    select * from {{ source('coincap', 'coincap_assets') }}

),

renamed as (

    select
        id as coin_id,
        snapshot_at,
        rank,
        symbol,
        name,
        supply,
        -- CoinCap sends 0 for "no maximum supply" at least once: no coin has a cap of 0.
        nullif(max_supply, 0) as max_supply,
        market_cap_usd,
        volume_usd_24hr,
        price_usd,
        change_percent_24hr,
        vwap_24hr,
        -- One real explorer comes without a scheme (etherscan.io): make it a link.
        case
            when explorer is null or explorer = '' then null
            when explorer like 'http://%' or explorer like 'https://%' then explorer
            else 'https://' || explorer
        end as explorer,
        source,
        lake_path,
        loaded_at,
        load_seq

    from source

)

select * from renamed
