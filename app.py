"""Eval Flywheel dashboard: page config, shared sidebar filters, navigation. Pages do the rest."""

import streamlit as st

from pages._common import require_login, sidebar

st.set_page_config(page_title="Eval Flywheel", page_icon="🎡", layout="wide")
require_login()  # only when [auth] is configured in .streamlit/secrets.toml
page = st.navigation([
    st.Page("pages/runs.py", title="Runs", icon="🏁", default=True),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/slices.py", title="Slices", icon="🧩"),
    st.Page("pages/rag.py", title="RAG", icon="🔎"),
    st.Page("pages/trends.py", title="Trends", icon="📈"),
    st.Page("pages/online.py", title="Online", icon="🌐"),
    st.Page("pages/correlation.py", title="Correlation", icon="🔗"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
])
sidebar()
page.run()
