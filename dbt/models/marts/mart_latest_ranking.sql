{#- The latest ranking with price changes computed from our own history. A change is the
    price now against the newest snapshot at least `minutes` older and at most
    `tolerance_minutes` older than that; with no such snapshot it is null, never invented. -#}
{%- set horizons = [
    {'name': '1h', 'minutes': 60, 'tolerance_minutes': 6},
    {'name': '24h', 'minutes': 1440, 'tolerance_minutes': 144},
    {'name': '7d', 'minutes': 10080, 'tolerance_minutes': 1008},
] -%}

with

snapshots as (

    select snapshot_at from {{ ref('mart_market_overview') }}

),

facts as (

    select * from {{ ref('facts_coins') }}

),

coins as (

    select * from {{ ref('dim_coins') }}

),

sparklines as (

    select * from {{ ref('mart_sparkline_7d') }}

),

latest_snapshot as (

    select max(snapshot_at) as snapshot_at from snapshots

),

{% for horizon in horizons %}
reference_{{ horizon.name }} as (

    select max(snapshots.snapshot_at) as snapshot_at
    from snapshots
    cross join latest_snapshot as latest
    where snapshots.snapshot_at <= {{ minutes_before('latest.snapshot_at', horizon.minutes) }}
      and snapshots.snapshot_at >= {{ minutes_before('latest.snapshot_at', horizon.minutes + horizon.tolerance_minutes) }}

),

price_{{ horizon.name }} as (

    select facts.coin_id, facts.price_usd
    from facts
    inner join reference_{{ horizon.name }} as reference
        on facts.snapshot_at = reference.snapshot_at

),

{% endfor %}
latest as (

    select facts.*
    from facts
    inner join latest_snapshot on facts.snapshot_at = latest_snapshot.snapshot_at

),

final as (

    select
        latest.rank,
        latest.coin_id,
        latest.name,
        latest.symbol,
        latest.price_usd,
        {% for horizon in horizons -%}
        100 * (latest.price_usd - price_{{ horizon.name }}.price_usd)
            / price_{{ horizon.name }}.price_usd as change_{{ horizon.name }}_pct,
        {% endfor -%}
        latest.change_percent_24hr as api_change_24h_pct,
        latest.market_cap_usd,
        latest.volume_usd_24hr,
        latest.vwap_24hr,
        latest.supply,
        coins.max_supply,
        coins.explorer,
        coins.first_seen_at,
        sparklines.prices_7d as sparkline_7d,
        latest.snapshot_at,
        latest.source

    from latest
    left join coins on coins.coin_id = latest.coin_id
    left join sparklines on sparklines.coin_id = latest.coin_id
    {% for horizon in horizons -%}
    left join price_{{ horizon.name }} on price_{{ horizon.name }}.coin_id = latest.coin_id
    {% endfor %}

)

select * from final
