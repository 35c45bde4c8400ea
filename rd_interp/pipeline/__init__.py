"""The end-to-end job: FASTA + annotations + ontology + model family -> report, as cached stages.

Top layer: it imports every lower layer and nothing imports it except the CLI.
`rd_interp.pipeline.run.Pipeline` plans and runs the stages; `cache` keys them; `summary` gathers the
report's numbers; `explain` looks up a new sequence in a finished run.
"""
