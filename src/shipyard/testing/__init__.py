"""Fakes of Shipyard's interfaces, for tests (as optuna ships InMemoryStorage, httpx MockTransport).

They implement the real interfaces and keep their contracts, but do no I/O beyond a temporary
folder, so a service built on them runs pass by pass in milliseconds:

* :class:`FakeBackend` — a compute backend with scripted capacity whose instances start, report
  phases and log lines, end or are lost when the test says;
* :class:`FakeModelServers` — model servers that are healthy, or fail to load their model, or
  die when the test says, answering invocations with a canned or computed response;
* :class:`FakePipelineSteps` — the pipeline engine's port, whose jobs' statuses a test sets;
* :class:`InlineExecutor` — runs submitted work at once (for services that hand slow work to one);
* :class:`~shipyard.core.clock.ManualClock` — time that moves when the test says.
"""

from shipyard.core.clock import ManualClock
from shipyard.testing._backend import FakeBackend, FakeInstance
from shipyard.testing._pipelines import FakePipelineSteps, FakeStepJob
from shipyard.testing._servers import FakeModelServer, FakeModelServers, InlineExecutor

__all__ = [
    "FakeBackend",
    "FakeInstance",
    "FakeModelServer",
    "FakeModelServers",
    "FakePipelineSteps",
    "FakeStepJob",
    "InlineExecutor",
    "ManualClock",
]
