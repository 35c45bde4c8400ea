"""GO enrichment of SAE latents: goatools-exact statistics, coverage, specificity, null control."""
