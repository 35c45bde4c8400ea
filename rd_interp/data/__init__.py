"""The data stage: validated proteins + resolved annotations of the analysis set (config.py, run.py)."""
