"""``gridlab report`` and ``gridlab export``: a grid's results, from the database alone.

- :mod:`~harness.reporting.arms`: which factor is the norm, which cells are its baseline
  (LayerNorm), how the other factors group cells and what each arm is called;
- :mod:`~harness.reporting.tables`: the report's tables as data (Key Results with paired tests
  over seeds, PairRM head-to-head, inference timing on equal work, losses and reference metrics);
  every interval and test is :mod:`db.stats`'s;
- :mod:`~harness.reporting.figures`: PNG curves with bands over seeds and the entropy heatmap,
  drawn with Pillow (no plotting library);
- :mod:`~harness.reporting.document`: the Markdown file, its figures, the tables for the terminal;
- :mod:`~harness.reporting.export`: tidy tables (jobs with their factors, summaries, curves,
  answers, verdicts) as CSV or Parquet.

Everything is read through :func:`jobs.reports.grid_results` (one read-only transaction).
"""
