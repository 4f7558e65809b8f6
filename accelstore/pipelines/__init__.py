"""Dask pipelines over raw files and the store."""
