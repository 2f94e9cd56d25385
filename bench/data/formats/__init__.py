"""Loaders of the source formats, registered by name in ``bench.data.datasets.LOADERS``:
RecBole atomic files, MovieLens raw files, generic CSV/Parquet tables, Amazon Reviews 2023 JSON
Lines and MIND news TSV. Each returns a ``bench.data.contract.RawDataset``; files are confined
and checked with ``bench.data.paths``, delimited text is read with ``bench.data.text``."""
