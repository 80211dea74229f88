"""Provenance on the dashboard: run detail shows what each attempt ran; the Results page
warns when the jobs it pools ran different code or environments and marks each row.
And no page shows a database password. Both backends."""

from __future__ import annotations

import pytest

from tests.e2e.test_provenance_cli import ran  # noqa: F401  (the fixture)

pytestmark = pytest.mark.contract


def _frame_with(at, *columns):
    for d in at.dataframe:
        if all(c in d.value.columns for c in columns):
            return d.value
    raise AssertionError(f"no table with columns {columns}")


def _page_text(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "warning", "error", "info", "code", "title", "subheader"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def test_run_detail_shows_each_attempts_code_environment_and_machine(ran, app):  # noqa: F811
    url, ids, text = ran
    at = app(url, "run_detail.py", query={"job": str(ids[2])})
    table = _frame_with(at, "attempt", "code", "torch", "GPUs")
    row = table.iloc[0]
    assert (row["code"], row["torch"], row["torch CUDA"], row["GPUs"], row["host"]) == (
        "11111111+dirty:dddddd", "2.5.1", "12.4", "2 x NVIDIA H100", "gpu-1")
    assert row["code from"] == "snapshot /ckpt/code/abc" and bool(row["dirty"]) is True
    codes = [c.value for c in at.code]
    assert text.strip() in codes  # the grid file text that created the job (st.code strips the newline)
    assert any("+return 2 * a" in c for c in codes)  # the uncommitted change it ran with
    assert any("torch==2.5.1" in c for c in codes)  # its packages
    assert any("version 1 of 1" in c.value for c in at.caption)


def test_results_page_warns_about_drift_and_marks_rows(ran, app):  # noqa: F811
    url, ids, _ = ran
    at = app(url, "results.py")
    warnings = [w.value for w in at.warning]
    assert any("2 code versions" in w and "11111111+dirty:dddddd" in w and "2 environments" in w for w in warnings), warnings
    values = _frame_with(at, "id", "value", "code", "env").set_index("id")
    assert values.loc[ids[0], "code"] == "11111111" and values.loc[ids[3], "code"] == "11111111+dirty:dddddd"
    # The pivot (columns: lr; pooled over seeds) pools both codes in its one row, and says so.
    pivot = next(d.value for d in at.dataframe if "code" in d.value.columns and "0.1 mean" in d.value.columns)
    assert pivot["code"].tolist() == ["11111111, 11111111+dirty:dddddd"]


def test_no_page_shows_the_database_password(pg_url, app, monkeypatch):
    from sqlalchemy.engine import make_url

    from tests.dashboards.conftest import fill

    filled = fill(pg_url)  # trust authentication: the server ignores the password
    parsed = make_url(filled.url)
    for url in (parsed.set(password="Dashb0ardPw").render_as_string(hide_password=False),
                parsed.update_query_dict({"password": "Dashb0ardPw"}).render_as_string(hide_password=False)):
        for page in ("overview.py", "results.py", "failures.py", "run_detail.py"):
            at = app(url, page)
            sidebar = [c.value for c in at.sidebar.caption]
            assert any("***" in c for c in sidebar), sidebar
            assert "Dashb0ardPw" not in _page_text(at) + "\n".join(sidebar), page
