"""Cryptolytics analyst app: a router, nothing else. Each page is its own module in views/.

streamlit run streamlit_app/app.py
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="Cryptolytics", page_icon=":material/monitoring:", layout="wide")

page = st.navigation(
    [
        st.Page(VIEWS / "market.py", title="Market", icon=":material/public:", default=True),
        st.Page(VIEWS / "coin.py", title="Coin", icon=":material/currency_bitcoin:"),
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(VIEWS / "health.py", title="Pipeline health", icon=":material/monitor_heart:"),
    ]
)
page.run()
