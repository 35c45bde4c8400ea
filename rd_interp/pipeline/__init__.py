"""The end-to-end job: FASTA + annotations + ontology + model family -> report, as cached stages.

Top layer: it imports every lower layer and nothing imports it except the CLI.
`rd_interp.pipeline.run.Pipeline` plans and runs each stage's own run() (rd_interp.<stage>.run); `cache`
keys and verifies them; `explain` looks up a new sequence in a finished run. The report's numbers are
gathered by rd_interp.report.summary from the stage folders.
"""
