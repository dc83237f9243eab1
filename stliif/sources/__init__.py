"""Data sources: the WorldStrat dataset on disk, STAC providers and the WorldStrat STAC export."""
