"""Build the bundled replay dataset from CoinGecko's 2021 daily market data.

Developer tool, run once; the product only reads its output. Input: the `perday.tar.xz`
and `fullcoinlist.csv` of github.com/hathix/historical-crypto-data (MIT; the data is
CoinGecko's). Output: one Parquet file, per day the top coins by market cap shaped like
CoinCap's `/assets` fields:

- rank from market cap; price, market cap and 24h volume as 32-bit floats (7 significant
  digits, which keeps the file at a third of the size); supply and changePercent24Hr are
  derived when served (see `ReplayDataset`); fields CoinGecko lacks stay null;
- rows with a zero or missing price or market cap (coins not listed yet) are dropped;
- CoinGecko ids become CoinCap ids where the coin is in CoinCap's 2025-03-16 snapshot
  (same id, or a unique symbol match: ripple -> xrp, binancecoin -> binance-coin, ...).

    python -m flows.replay.build_dataset --coingecko ../shared/data/coingecko-2021-daily \
        --coincap-assets ../shared/data/coincap/v3_assets_2025-03-16T183431Z.json
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

import duckdb

from flows.replay.dataset import DATASET_PATH

TOP_N = 2000
# Symbol collisions a unique-symbol rule would get wrong (TAO: TaoDAO is not Bittensor).
NOT_THE_SAME_COIN = {"taodao"}


def coincap_ids(
    coingecko_coins: list[tuple[str, str, str]], coincap_assets: list[dict]
) -> dict[str, str]:
    """CoinGecko id -> CoinCap id, for coins CoinCap lists under another id."""
    by_symbol: dict[str, list[str]] = {}
    for cg_id, symbol, _name in coingecko_coins:
        by_symbol.setdefault(symbol.lower(), []).append(cg_id)
    known = {cg_id for cg_id, _, _ in coingecko_coins}
    mapping: dict[str, str] = {}
    for asset in coincap_assets:
        if asset["id"] in known:
            continue
        candidates = [
            c for c in by_symbol.get(asset["symbol"].lower(), []) if c not in NOT_THE_SAME_COIN
        ]
        if len(candidates) == 1:
            mapping[candidates[0]] = asset["id"]
    return mapping


def build(coingecko_dir: Path, coincap_assets_file: Path, out: Path) -> None:
    coins = duckdb.execute(
        "select id, symbol, name from read_csv($path, header = true)",
        {"path": str(coingecko_dir / "fullcoinlist.csv")},
    ).fetchall()
    assets = json.loads(coincap_assets_file.read_bytes())["data"]
    mapping = coincap_ids(coins, assets)
    print(f"{len(mapping)} CoinGecko ids renamed to CoinCap ids: {sorted(mapping.items())}")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(coingecko_dir / "perday.tar.xz") as archive:
            archive.extractall(tmp, filter="data")
        con = duckdb.connect()
        con.execute("create table coins (cg_id varchar, symbol varchar, name varchar)")
        con.executemany("insert into coins values (?, ?, ?)", coins)
        con.execute("create table renamed (cg_id varchar, coincap_id varchar)")
        con.executemany("insert into renamed values (?, ?)", list(mapping.items()))
        con.execute(
            f"""
            create table days as
            select "timestamp" as day_ms, coinId as cg_id, price, marketCap as market_cap,
                   totalVolume as volume
            from read_csv('{tmp}/perday/*.csv', header=true,
                          columns={{'timestamp': 'BIGINT', 'readableTimestamp': 'VARCHAR',
                                   'coinId': 'VARCHAR', 'price': 'DOUBLE',
                                   'marketCap': 'DOUBLE', 'totalVolume': 'DOUBLE'}})
            where price > 0 and marketCap > 0 and "timestamp" is not null
            """
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"""
            copy (
                with ranked as (
                    select *,
                        row_number() over (
                            partition by day_ms order by market_cap desc, cg_id
                        ) as rank
                    from days
                )
                select
                    r.day_ms,
                    coalesce(n.coincap_id, r.cg_id) as id,
                    r.rank::smallint as rank,
                    upper(c.symbol) as symbol,
                    c.name,
                    r.price::float as price_usd,
                    r.market_cap::float as market_cap_usd,
                    r.volume::float as volume_usd_24hr
                from ranked as r
                join coins as c using (cg_id)
                left join renamed as n using (cg_id)
                where r.rank <= {TOP_N}
                order by id, r.day_ms  -- one coin's days together: floats compress far better
            ) to '{out}'
            (format parquet, compression zstd, compression_level 19, row_group_size 200000)
            """
        )
    summary = duckdb.execute(
        f"select count(*), count(distinct day_ms), min(day_ms), max(day_ms) from '{out}'"
    ).fetchall()[0]
    print(f"wrote {out}: {summary[0]} rows, {summary[1]} days, {out.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coingecko", type=Path, required=True, help="coingecko-2021-daily folder")
    parser.add_argument("--coincap-assets", type=Path, required=True, help="a real v3 /assets body")
    parser.add_argument("--out", type=Path, default=DATASET_PATH)
    args = parser.parse_args()
    build(args.coingecko, args.coincap_assets, args.out)


if __name__ == "__main__":
    main()
