"""Point the ``sagemaker`` SDK (2.x and 3.x) at Shipyard, and take out its waits: ``import shipyard.connector``.

What ``shipyard sagemaker-env`` does (environment, printed as shell exports):

* ``AWS_ENDPOINT_URL`` (and credentials, region): boto3 — and so the SDK, including its STS
  ``GetCallerIdentity`` for the account id, IAM ``GetRole`` for ``get_execution_role()`` and the
  S3 calls that make its default bucket — talks to Shipyard, and nothing leaves the machine.
* ``SAGEMAKER_USER_CONFIG_OVERRIDE``: an SDK config file (in the data dir) that opts out of the
  SDK's telemetry (a call to AWS after each job) and names ``shipyard`` as the default bucket.

What importing this module patches, and only this:

* ``sagemaker.session.sts_regional_endpoint`` (and ``sagemaker.utils``'s): the SDK hard-wires STS to
  ``https://sts.<region>.amazonaws.com`` for the account id and the execution role, ignoring
  ``AWS_ENDPOINT_URL``; patched, it gives ``AWS_ENDPOINT_URL`` when that is set.
* ``sagemaker.session.time``: a view of the ``time`` module whose ``sleep`` waits at most
  :data:`MAX_POLL_SECONDS`, and whose ``time()`` runs ahead by the waits it cut short. The SDK
  sleeps 5 to 30 s between looks at a job or an endpoint (``_wait_until``, ``logs_for_job``,
  ``wait_for_endpoint`` and the like) and asks for a job's status at most every 30 s of
  ``time.time()`` while it tails a log; that suits AWS, where a job takes minutes to start, and
  dominates a Shipyard job, which starts in a fraction of a second. The SDK's own clock so runs
  as if it had waited: a ``timeout`` given to an SDK wait counts those waits in full.
* ``sagemaker.workflow.pipeline._PipelineExecution.wait``: a pipeline execution's ``wait()`` (and
  ``result()``, which waits) polls through a botocore waiter that sleeps ``delay`` (30 s) between
  looks; it polls every :data:`MAX_POLL_SECONDS` instead, for as long in all as it would have.
  Everything else the SDK does is unchanged.

The SDK v3 has the same in ``sagemaker-core``'s modules, patched alike:
``sagemaker.core.helper.session_helper`` and ``sagemaker.core.common_utils``'s
``sts_regional_endpoint``; the ``time`` of ``session_helper`` (its ``_wait_until`` sleeps its
``poll``, 30 s for a ModelBuilder deploy, before its first look) and of ``sagemaker.core.resources``
(every resource's ``wait``, ModelTrainer's and the tuner's among them); and
``sagemaker.mlops.workflow.pipeline.PipelineExecution.wait``.
"""

from __future__ import annotations

import math
import os
import time
import types
from typing import Any

MAX_POLL_SECONDS = 0.2


class _QuickTime(types.ModuleType):
    """The ``time`` module, with sleeps capped and ``time()`` ahead by what they left out."""

    def __init__(self) -> None:
        super().__init__("time")
        self._skipped = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        waited = min(seconds, MAX_POLL_SECONDS)
        time.sleep(waited)
        self._skipped += max(0.0, seconds - waited)

    def time(self) -> float:
        return time.time() + self._skipped


def _sts_endpoint(original: Any) -> Any:
    def sts_regional_endpoint(region: str) -> str:
        return os.environ.get("AWS_ENDPOINT_URL") or original(region)

    sts_regional_endpoint.shipyard = True  # type: ignore[attr-defined]
    return sts_regional_endpoint


def _quick_wait(original: Any) -> Any:
    def wait(self: Any, delay: float = 30, max_attempts: int = 60) -> Any:
        quick = min(delay, MAX_POLL_SECONDS)
        return original(
            self, delay=quick, max_attempts=math.ceil(max_attempts * delay / quick) if quick else max_attempts
        )

    wait.shipyard = True  # type: ignore[attr-defined]
    return wait


def _enable_v3() -> bool:
    """The same patches for the SDK v3 (``sagemaker-core``'s modules); False when it is not v3."""
    try:
        import sagemaker.core.common_utils as common_utils
        import sagemaker.core.helper.session_helper as session_helper
        import sagemaker.core.resources as resources
    except ImportError:
        return False
    for module in (session_helper, resources):  # _wait_until, wait_for_endpoint; Resource.wait
        if not isinstance(module.time, _QuickTime):
            module.time = _QuickTime()
    for module in (session_helper, common_utils):
        original = getattr(module, "sts_regional_endpoint")  # noqa: B009
        if not getattr(original, "shipyard", False):
            setattr(module, "sts_regional_endpoint", _sts_endpoint(original))  # noqa: B010
    try:
        from sagemaker.mlops.workflow.pipeline import PipelineExecution
    except ImportError:  # without sagemaker-mlops
        return True
    if not getattr(PipelineExecution.wait, "shipyard", False):
        PipelineExecution.wait = _quick_wait(PipelineExecution.wait)
    return True


def enable() -> bool:
    """Apply the patches (once); False when the ``sagemaker`` SDK is not installed."""
    if _enable_v3():
        return True
    try:
        import sagemaker.session
        import sagemaker.utils
    except ImportError:
        return False
    if not isinstance(sagemaker.session.time, _QuickTime):
        sagemaker.session.time = _QuickTime()
    for module in (sagemaker.session, sagemaker.utils):
        original = getattr(module, "sts_regional_endpoint")  # noqa: B009 - not in every SDK's stubs
        if not getattr(original, "shipyard", False):
            setattr(module, "sts_regional_endpoint", _sts_endpoint(original))  # noqa: B010
    try:
        from sagemaker.workflow.pipeline import _PipelineExecution
    except ImportError:  # an SDK without pipelines
        return True
    if not getattr(_PipelineExecution.wait, "shipyard", False):
        _PipelineExecution.wait = _quick_wait(_PipelineExecution.wait)  # type: ignore[method-assign]
    return True


enable()
