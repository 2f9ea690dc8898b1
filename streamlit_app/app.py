"""Cryptolytics analyst app: a router, nothing else. Each page is its own module in views/.

streamlit run streamlit_app/app.py
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# a file of ours: a Material or emoji icon makes every browser fetch it from Google's CDN
FAVICON = Path(__file__).with_name("favicon.png")
st.set_page_config(page_title="Cryptolytics", page_icon=str(FAVICON), layout="wide")

page = st.navigation(
    [
        st.Page("views/market.py", title="Market", icon=":material/public:", default=True),
        st.Page("views/history.py", title="Market history", icon=":material/show_chart:"),
        st.Page("views/ranks.py", title="Ranks", icon=":material/leaderboard:"),
        st.Page("views/coin.py", title="Coin", icon=":material/currency_bitcoin:"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("views/health.py", title="Pipeline health", icon=":material/monitor_heart:"),
    ]
)
page.run()
