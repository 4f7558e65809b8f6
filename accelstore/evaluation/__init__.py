"""Encoders and the random-forest baseline scored by subject on labelled windows, and the report."""
