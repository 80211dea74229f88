"""The gridlab dashboard: the entry point ``streamlit run`` runs (``gridlab dashboard``).

    streamlit run dashboards/app.py -- --db sqlite:///gridlab.db

It opens the database read-only (``--db`` after ``--``, else ``GRIDLAB_DB``), offers the
grid picker in the sidebar (``?grid=NAME`` in a link picks one), and routes to one page per file in this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from dashboards import queries, ui
from db import engine as db_engine
from db.errors import GridlabError

HERE = Path(__file__).parent

PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("curves.py", "Curves", ":material/show_chart:"),
    ("results.py", "Results", ":material/table_chart:"),
    ("comparisons.py", "Comparisons", ":material/compare_arrows:"),
    ("effects.py", "Factor effects", ":material/insights:"),
    ("run_compare.py", "Compare runs", ":material/difference:"),
    ("timing.py", "Timing", ":material/speed:"),
    ("failures.py", "Failures", ":material/error:"),
    ("run_detail.py", "Run detail", ":material/description:"),
]


def main() -> None:
    st.set_page_config(page_title="gridlab", page_icon=":material/grid_on:", layout="wide")
    url = ui.db_url_from(sys.argv[1:])
    if not url:
        st.error(f"No database given: start with `gridlab dashboard --db URL` or set {db_engine.ENV_VAR}.")
        st.stop()
    try:
        ui.open_database(url)
    except GridlabError as exc:
        st.error(f"gridlab: {exc}")
        st.stop()
    st.session_state["db_url"] = url

    pages = [st.Page(HERE / file, title=title, icon=icon, default=(i == 0)) for i, (file, title, icon) in enumerate(PAGES)]
    page = st.navigation(pages)
    with st.sidebar:
        with ui.reading() as conn:
            names = queries.grid_progress(conn)["grid"].drop_duplicates().tolist()
        choices = [ui.ALL_GRIDS, *names]
        if "grid" not in st.session_state and st.query_params.get("grid") in choices:
            st.session_state["grid"] = st.query_params["grid"]  # a link that names its grid: ?grid=NAME
        st.selectbox("Grid", choices, key="grid")
        st.caption(f"Database: `{db_engine.redact(db_engine.resolve_url(url))}` (read-only)")
    page.run()


main()
