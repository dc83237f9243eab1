"""Serve every deployment from this machine: ``python -m deployments.serve`` (repo root).

Needs a Prefect server (``PREFECT_API_URL``); runs triggered from the UI, the API or a schedule
execute here, in subprocesses, with this machine's ``STLIIF_DATA`` / ``STLIIF_STORE``.
"""

from __future__ import annotations

from prefect import serve

from deployments.definitions import all_deployments

if __name__ == "__main__":
    serve(*all_deployments())
