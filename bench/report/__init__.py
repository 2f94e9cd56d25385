"""Leaderboards, statistics, paper tables, figures and provenance, rebuilt from MLflow alone.

Nothing heavy is imported here: ``bench.report.leaderboard`` and ``bench.report.build`` import
mlflow, scipy and matplotlib inside the functions that need them.

- ``bench.report.runs``: read FINISHED evaluation runs, check they are comparable, download
  ``per_user.parquet`` (data artifacts only, never models).
- ``bench.report.stats``: paired tests, multiple-testing corrections, effect sizes, CIs.
- ``bench.report.leaderboard``: ``bench leaderboard`` (``leaderboard_main``).
- ``bench.report.build``: ``bench report`` (``report_main``).
- ``bench.report.figures``: the report's matplotlib figures.
"""
