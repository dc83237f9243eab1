"""Prefect tasks: thin adapters around stliif calls (retries, caching, logging)."""
