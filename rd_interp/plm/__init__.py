"""Protein language models: fair-esm ESM-2 loading, embedding extraction, the shipped mini family.

Entry points: `esm.load_model` (ESM-2 by size, fair-esm name, shipped member or .pt path),
`embed.embed_fasta` (FASTA -> resumable EmbeddingStore), `family.train_family` (MLM-train a family of
ESM-2-architecture models on your own sequences), `family.SHIPPED_FAMILY` (small -> large).
"""
