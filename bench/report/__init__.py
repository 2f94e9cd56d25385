"""Leaderboards, statistics, paper tables, figures and provenance, rebuilt from MLflow alone.

Nothing heavy is imported here: ``bench.report.leaderboard`` and ``bench.report.build`` import
mlflow, scipy and matplotlib inside the functions that need them.

- ``bench.report.runs``: read FINISHED evaluation runs, check they are comparable, download
  ``per_user.parquet`` (data artifacts only, never models).
- ``bench.report.stats``: paired tests, multiple-testing corrections, effect sizes, CIs.
- ``bench.report.leaderboard``: ``bench leaderboard`` (``leaderboard_main``).
- ``bench.report.build``: ``bench report`` (``report_main``), the steps below in order.
- ``bench.report.spec``: what a report shows (``ReportConfig``, spec files, validation).
- ``bench.report.comparisons``: the table's numbers and the paired tests behind its marks.
- ``bench.report.tables``: ``table.tex``, ``table.md`` and ``table.csv``.
- ``bench.report.plots``: which figures are drawn from which numbers, and their files.
- ``bench.report.figures``: the report's matplotlib figures.
- ``bench.report.provenance``: ``provenance.json`` and ``README.md``.
- ``bench.report.output``: which ``--out`` may be replaced, and the atomic swap.
"""
