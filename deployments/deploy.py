"""Register every deployment on a process work pool: ``python -m deployments.deploy [--pool NAME]``.

Needs a Prefect server (``PREFECT_API_URL``). The pool is created if missing; the flows' code is
loaded from this checkout (``--source`` may name another path or a git URL), so any worker that
can read it runs them: ``stliif worker --pool NAME``. On Kubernetes or ECS, create a pool of that
type and pass ``--pool`` (and an image that runs ``scripts/setup``); the flows do not change.
"""

from __future__ import annotations

import argparse
import asyncio

from prefect import deploy
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from deployments.definitions import REPO, all_deployments

POOL = "stliif-process"  # the pool `stliif worker` polls by default


async def ensure_pool(name: str, kind: str = "process") -> None:
    """Create the work pool ``name`` unless it exists."""
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type=kind))
        except ObjectAlreadyExists:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", default=POOL, help="Work pool name.")
    ap.add_argument("--source", default=str(REPO), help="Where workers load the flows from.")
    args = ap.parse_args()
    asyncio.run(ensure_pool(args.pool))
    ids = deploy(*all_deployments(source=args.source), work_pool_name=args.pool, build=False, push=False,
                 ignore_warnings=True, print_next_steps_message=False)  # fmt: skip
    print(f"{len(ids)} deployments on work pool {args.pool!r}; start a worker: stliif worker --pool {args.pool}")


if __name__ == "__main__":
    main()
