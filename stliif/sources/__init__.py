"""Data sources: the WorldStrat dataset on disk (STAC providers come later)."""
