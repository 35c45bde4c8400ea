"""Bottom layer: files, formats, data sets and the on-disk embedding store."""
