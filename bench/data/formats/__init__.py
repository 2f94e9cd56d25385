"""Loaders for source formats beyond MovieLens and plain tables (registered in
``bench.data.datasets.LOADERS``): Amazon Reviews 2023 JSON Lines and MIND news TSV."""
