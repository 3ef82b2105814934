"""Similarity for known-bad matching and campaign detection: PDQ hashes, an exact Hamming-radius
index, text near-duplicates (MinHash/LSH), clusters, hash banks and their import."""
