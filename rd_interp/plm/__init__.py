"""Protein language models: fair-esm ESM-2 loading, embedding extraction, the shipped mini family."""
