"""rd_interp: audit feature disentanglement in protein language model embeddings.

Data flows one way: io -> plm -> distill -> sae -> enrich -> report -> (pipeline, cli).
A lower layer never imports a higher one.
"""

__version__ = "0.1.0"
