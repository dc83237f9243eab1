"""Starting the store's Prefect deployments from the viewer: ``render-manual`` (render the AOI
shown at the date shown) and ``acquire-manual`` (acquire an area's new dates), only when
``PREFECT_API_URL`` names a Prefect server (``stliif server``) where they are deployed
(``python -m deployments.deploy`` with ``stliif worker``, or ``python -m deployments.serve``).

The request is checked by the flow's own spec (:class:`~stliif.config.RenderSpec`,
:class:`~stliif.config.AcquireSpec`) before anything is sent, and the run is given the viewer's
store (never credentials: those stay in the workers' ``AWS_*`` variables).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from stliif.config import AcquireSpec, RenderSpec, StoreSpec
from stliif.errors import DataAccessError, InvalidInputError, NoDataError

__all__ = ["RUNNABLE", "prefect_api", "start_run"]

RUNNABLE: dict[str, tuple[str, type[BaseModel]]] = {
    "render-manual": ("render", RenderSpec),
    "acquire-manual": ("acquire", AcquireSpec),
}
"""Deployments the viewer may start: name -> (flow name, the spec its ``spec`` parameter takes)."""


def prefect_api() -> str | None:
    """The Prefect API the viewer starts runs on (``PREFECT_API_URL``), or None."""
    return os.environ.get("PREFECT_API_URL") or None


def _run_deployment(name: str, parameters: dict[str, Any]) -> Any:
    """Prefect's ``run_deployment``, returning at once with the flow run (scheduled)."""
    from prefect.deployments import run_deployment

    return run_deployment(name=name, parameters=parameters, timeout=0)


def start_run(deployment: str, spec: dict[str, Any], store: StoreSpec) -> dict[str, Any]:
    """Start ``deployment`` with ``spec`` on the viewer's store; returns the flow run's id,
    name and its page in the Prefect UI.

    Raises:
        InvalidInputError: no PREFECT_API_URL, another deployment, or a spec its flow refuses.
        NoDataError: the deployment is not on the server.
        DataAccessError: no Prefect API answers at PREFECT_API_URL.
    """
    api = prefect_api()
    if api is None:
        raise InvalidInputError("set PREFECT_API_URL (see `stliif server`) to start runs from the viewer")
    if deployment not in RUNNABLE:
        raise InvalidInputError(f"the viewer starts only {', '.join(RUNNABLE)}; not {deployment!r}")
    flow, model = RUNNABLE[deployment]
    checked = model.model_validate(spec)
    import httpx
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = f"{flow}/{deployment}"
    parameters = {"spec": checked.model_dump(mode="json"), "store": store.model_dump(mode="json")}
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):  # the API named, whatever the process's settings
            run = _run_deployment(name, parameters)
    except (httpx.HTTPError, OSError) as err:
        raise DataAccessError(f"the Prefect API at {api} does not answer: {err}") from err
    except ObjectNotFound as err:
        raise NoDataError(f"no deployment {name} on {api}: deploy them with `python -m deployments.deploy` "
                          "(and `stliif worker`) or serve them with `python -m deployments.serve`") from err  # fmt: skip
    return {"deployment": name, "flow_run_id": str(run.id), "flow_run_name": str(run.name),
            "ui": f"{api.rstrip('/').removesuffix('/api')}/runs/flow-run/{run.id}"}  # fmt: skip
