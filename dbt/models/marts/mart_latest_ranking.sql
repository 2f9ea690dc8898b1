{#- The latest ranking with price changes computed from our own history. A change is the
    price now against the newest snapshot at least `minutes` older and at most
    `tolerance_minutes` older than that; with no such snapshot it is null, never invented.
    Rank changes use the same reference snapshots: `rank_change_<h>` is the places climbed
    (rank then minus rank now, so +3 went from #8 to #5); null for a coin not ranked then.
    Data-quality flags mark what no analyst should read as a market move (the movers leave
    flagged coins out; a coin page lists its flags):
    - no_volume: a 24h volume of 0, nobody traded it; volume_unknown: the source gives none;
    - price_without_market_cap: the price moved 50 % or more in 24h and the market cap (price
      x supply) under 5 %: a source error or a redenomination (the replay's EverRise,
      +3,858,272 % in a day with its cap unchanged);
    - supply_jump: the supply changed by more than 50 % in 24h (an unlock, a redenomination
      or a source error), so the cap and rank moved for another reason than the market;
    - implausible_move: more than +-1,000 % in 24h (ours, or CoinCap's where our history is
      too short): over the 2021 replay every day's top gainer above it is a source error.
    CoinCap's market cap is supply x price by definition, so no flag compares the two. -#}
{%- set horizons = [
    {'name': '1h', 'minutes': 60, 'tolerance_minutes': 6},
    {'name': '24h', 'minutes': 1440, 'tolerance_minutes': 144},
    {'name': '7d', 'minutes': 10080, 'tolerance_minutes': 1008},
    {'name': '30d', 'minutes': 43200, 'tolerance_minutes': 4320},
] -%}

{%- set overview = ref('mart_market_overview') -%}
{%- set prune = execute and var('prune_to_reference_snapshots', true) -%}
{%- set latest = latest_literal(overview, 'snapshot_at') if prune else none -%}
{%- set references_sql = reference_snapshots_sql(overview, horizons, latest) -%}
{#- The same query run once while compiling gives the four snapshot times as literals, so the
    fact scan reads only their row groups (partitions on BigQuery) however long the history.
    A pure optimisation: a dbt unit test's inputs cannot be queried while compiling, so its
    test sets the var `prune_to_reference_snapshots` false and the filter is left out. -#}
{%- set wanted = [] -%}
{%- if prune -%}
    {%- for value in run_query(references_sql).rows[0] if value is not none -%}
        {%- do wanted.append(timestamp_literal(value)) -%}
    {%- endfor -%}
{%- endif %}

with

references_at as (

    {{ references_sql }}

),

facts as (

    select * from {{ ref('facts_coins') }}
    {% if wanted -%}
    where snapshot_at in ({{ wanted | join(', ') }})
    {%- endif %}

),

coins as (

    select * from {{ ref('dim_coins') }}

),

sparklines as (

    select * from {{ ref('int_coin_sparkline_7d') }}

),

{% for horizon in horizons %}
    price_{{ horizon.name }} as (

        select
            facts.coin_id,
            facts.rank,
            facts.price_usd,
            facts.market_cap_usd,
            facts.supply
        from facts
        inner join references_at on facts.snapshot_at = references_at.at_{{ horizon.name }}

    ),

{% endfor %}
latest as (

    select facts.*
    from facts
    inner join references_at on facts.snapshot_at = references_at.latest_at

),

changes as (

    select
        latest.rank,
        latest.coin_id,
        latest.name,
        latest.symbol,
        latest.price_usd,
        {% for horizon in horizons -%}
            100 * (latest.price_usd - price_{{ horizon.name }}.price_usd)
            / price_{{ horizon.name }}.price_usd as change_{{ horizon.name }}_pct,
            price_{{ horizon.name }}.rank as rank_{{ horizon.name }}_ago,
            price_{{ horizon.name }}.rank - latest.rank as rank_change_{{ horizon.name }},
        {% endfor -%}
        100 * (latest.market_cap_usd - price_24h.market_cap_usd)
        / nullif(price_24h.market_cap_usd, 0) as market_cap_change_24h_pct,
        100 * (latest.supply - price_24h.supply)
        / nullif(price_24h.supply, 0) as supply_change_24h_pct,
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

),

flagged as (

    select
        *,
        coalesce(volume_usd_24hr = 0, false) as flag_no_volume,
        volume_usd_24hr is null as flag_volume_unknown,
        coalesce(
            abs(change_24h_pct) >= 50 and abs(market_cap_change_24h_pct) < 5, false
        ) as flag_price_without_market_cap,
        coalesce(abs(supply_change_24h_pct) > 50, false) as flag_supply_jump,
        coalesce(
            abs(coalesce(change_24h_pct, api_change_24h_pct)) > 1000, false
        ) as flag_implausible_move
    from changes

),

final as (

    select
        *,
        flag_no_volume
        or flag_volume_unknown
        or flag_price_without_market_cap
        or flag_supply_jump
        or flag_implausible_move as has_quality_flag
    from flagged

)

select * from final
