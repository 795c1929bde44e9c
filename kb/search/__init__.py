"""Retrieval: sparse BM25, dense vectors, fusion, and the on-disk index."""
