"""Prefect flows: compose the tasks into pipelines; no math here."""
