"""Sparse autoencoders (TopK, BatchTopK, ReLU-L1) on embedding spaces."""
