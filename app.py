"""Eval Flywheel dashboard: page config, shared sidebar filters, navigation. Pages do the rest."""

import streamlit as st

from pages._common import require_login, sidebar

st.set_page_config(page_title="Eval Flywheel", page_icon=":material/cyclone:", layout="wide")
require_login()  # only when [auth] is configured in .streamlit/secrets.toml
page = st.navigation([
    # The default page is served at "/"; the same page, hidden, answers "/runs" too.
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", default=True,
            url_path="home"),
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs",
            visibility="hidden"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/many_runs.py", title="Runs × slices", icon=":material/view_column:"),
    st.Page("pages/slices.py", title="Slices", icon=":material/grid_view:"),
    st.Page("pages/rag.py", title="RAG", icon=":material/manage_search:"),
    st.Page("pages/trends.py", title="Trends", icon=":material/trending_up:"),
    st.Page("pages/online.py", title="Online", icon=":material/monitoring:"),
    st.Page("pages/correlation.py", title="Correlation", icon=":material/insights:"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
])
sidebar()
page.run()
