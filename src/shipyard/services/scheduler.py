"""The scheduler: places waiting jobs (training, processing, transform) on the backend and follows
running ones.

One thread, one loop. Each pass reads the active jobs from the store (the only source of truth),
launches those that fit the free capacity (oldest first), and for launched ones reads what their
agents wrote — ``status.json`` and ``log.jsonl`` in each instance folder — into the store:
secondary-status transitions, metric points, and at the end the outcome, artifacts, times and
cost. Nothing is kept only in memory, so a restarted server picks up exactly where the last one
was; agents run on meanwhile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.compute import Backend, Backends, InstanceLaunch
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.placement import Resources, plan
from shipyard.core.training import (
    Job,
    MetricPoint,
    SecondaryStatus,
    TrainingJobStatus,
)
from shipyard.errors import ShipyardError, ValidationError
from shipyard.runtime.contract import hosts_for
from shipyard.services.costs import CostService
from shipyard.services.training import utcnow
from shipyard.store import JobRepository, TrainingJobRepository
from shipyard.store.utilization import Sample, UtilizationRepository

log = logging.getLogger(__name__)

_PHASES = {
    "Downloading": SecondaryStatus.DOWNLOADING,
    "Training": SecondaryStatus.TRAINING,
    "Uploading": SecondaryStatus.UPLOADING,
}
_ACTIVE_POLL = 0.1
_IDLE_POLL = 1.0


class TrainingScheduler:
    """Runs in its own thread; :meth:`wake` makes it look now rather than at its next poll."""

    def __init__(
        self,
        repositories: Sequence[JobRepository[Any]],
        backends: Backends,
        catalog: InstanceCatalog,
        costs: CostService,
        utilization: UtilizationRepository,
        *,
        jobs_dir: Path,
        object_store_config: Mapping[str, Any],
        fit_to_machine: bool = True,
        stop_grace_seconds: float = 30.0,
        utilization_seconds: float = 5.0,
        hide_paths: tuple[Path, ...] = (),
        environments: Mapping[str, Any] | None = None,
        job_api: Mapping[str, str] | None = None,
    ) -> None:
        self._repos = {r.kind: r for r in repositories}
        self._backends = backends
        self._catalog = catalog
        self._costs = costs
        self._utilization = utilization
        self._jobs_dir = jobs_dir
        self._store_config = dict(object_store_config)
        self._fit = fit_to_machine
        self._grace = stop_grace_seconds
        self._utilization_seconds = utilization_seconds
        self._hide = [str(p) for p in hide_paths]
        self._environments = dict(environments or {})
        self._job_api = dict(job_api or {})
        self._passes: list[Callable[[], bool]] = []
        self._unfollowed_jobs: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        backends.on_change(self.wake)  # an agent that ends is looked at now, not at the next poll

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipyard-scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def add_pass(self, run_pass: Callable[[], bool]) -> None:
        """Run ``run_pass`` after each pass over training jobs (tuning builds on training)."""
        self._passes.append(run_pass)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for run_pass in (self.tick, *self._passes):
                try:
                    busy = run_pass() or busy
                except Exception:  # the loop must survive anything one pass runs into
                    log.exception("Scheduler pass failed")
            self._wake.wait(_ACTIVE_POLL if busy else _IDLE_POLL)
            self._wake.clear()

    # -- one pass -------------------------------------------------------------------------------
    def tick(self) -> bool:
        """One pass over the active jobs; returns whether any job is active."""
        jobs = sorted((j for r in self._repos.values() for j in r.active()), key=lambda j: j.created)
        used = {b.name: Resources(0, 0, 0) for b in self._backends}
        for job in jobs:
            if job.runtime.get("instances") and job.runtime.get("backend", "local") in used:
                name = job.runtime.get("backend", "local")
                used[name] = used[name] + Resources(**job.runtime["placement"]) * job.spec.instance_count
        waiting: dict[str, list[Resources]] = {name: [] for name in used}
        for job in jobs:
            try:
                if job.runtime.get("instances") and job.runtime.get("backend", "local") not in used:
                    self._unfollowed(job)
                elif job.runtime.get("instances"):
                    self._follow(job)
                else:
                    self._place(job, used, waiting)
            except Exception as exc:
                log.exception("Training job %s: scheduler error", job.name)
                self._fail(job, f"InternalServerError: {exc}")
        for backend in self._backends:
            backend.demand(waiting[backend.name])
        return bool(jobs)

    def _unfollowed(self, job: Job[Any]) -> None:
        """A job running on a backend this server is not configured for (started with other
        settings) is left as it is, not failed: a server with the right settings follows it."""
        if job.name not in self._unfollowed_jobs:
            self._unfollowed_jobs.add(job.name)
            log.warning(
                "%s job %s runs on the %r backend, which this server is not configured to use; it is "
                "not followed (start the server with that backend to follow it)",
                job.kind.capitalize(),
                job.name,
                job.runtime.get("backend"),
            )

    def _place(self, job: Job[Any], used: dict[str, Resources], waiting: dict[str, list[Resources]]) -> None:
        """Launch ``job`` if it fits what its backend has free (adding it to ``used``), else mark
        it Pending (and add its instances to ``waiting``)."""
        now = utcnow()
        if job.state.status == TrainingJobStatus.STOPPING:
            self._repos[job.kind].modify(
                job.name,
                lambda j: j.with_state(
                    j.state.finish(TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED, now)
                ),
            )
            return
        backend = self._backends.for_type(job.spec.instance_type)
        try:
            placement = plan(
                self._catalog.get(job.spec.instance_type),
                job.spec.instance_count,
                backend.capacity,
                node=backend.largest_node,
                fit_to_machine=self._fit,
            )
        except ValidationError as exc:
            self._fail(job, f"CapacityError: {exc.message}")
            return
        free = backend.capacity - used[backend.name]
        if not backend.available or not placement.total.fits_in(free):
            waiting[backend.name] += [placement.per_instance] * placement.count
            if job.state.secondary != SecondaryStatus.PENDING:
                self._repos[job.kind].modify(
                    job.name, lambda j: j.with_state(j.state.advance(SecondaryStatus.PENDING, now))
                )
            return
        attempt = int(job.runtime.get("attempt", 0))
        hosts = hosts_for(job.spec.instance_count)
        launches = []
        launched_at = int(time.time())
        for index, host in enumerate(hosts):
            instance_dir = _job_dir(self._jobs_dir, job) / f"attempt-{attempt}" / host
            config = {
                "kind": job.kind,
                "request": dict(job.spec.request),
                "model": job.runtime.get("model"),  # a transform job's model, as it was at its creation
                "arn": job.arn,
                "host": host,
                "host_index": index,
                "region": job.runtime.get("region", "us-east-1"),
                "object_store": self._store_config,
                "api": self._job_api,
                "cpus": placement.per_instance.cpus,
                "gpus": placement.per_instance.gpus,
                "memory_bytes": self._catalog.get(job.spec.instance_type).memory_gib * 2**30,
                "disk_bytes": _volume_gb(job.spec.request) * 10**9,
                "utilization_seconds": self._utilization_seconds,
                "sandbox": getattr(backend, "sandbox", "off"),
                "hide": self._hide,
                "stop_grace_seconds": self._grace,
                "python": sys.executable,
                "environment": job.runtime.get("environment"),
                **self._environments,
                "notes": [placement.scaled_down] if placement.scaled_down else [],
            }
            launches.append(
                InstanceLaunch(instance_dir, config, job.spec.instance_type, placement.per_instance)
            )
        handles = backend.launch(launches)
        instances = [
            {
                "host": host,
                "dir": str(launch.instance_dir),
                "handle": handle,
                "stream": f"{job.name}/{host}-{launched_at}",
                "launched_at": launched_at * 1000,
            }
            for host, launch, handle in zip(hosts, launches, handles, strict=True)
        ]
        per = dataclasses.asdict(placement.per_instance)

        def launched(j: Job[Any]) -> Job[Any]:
            return j.with_runtime(instances=instances, placement=per, backend=backend.name)

        self._repos[job.kind].modify(job.name, launched)
        log.info("Training job %s: launched %d instance(s) on %s", job.name, len(instances), backend.name)
        used[backend.name] = used[backend.name] + placement.total

    def _follow(self, job: Job[Any]) -> None:
        backend = self._backends.named(job.runtime.get("backend", "local"))
        instances = job.runtime["instances"]
        statuses = [_read_json(Path(i["dir"]) / "status.json") for i in instances]
        now = utcnow()
        changes: dict[str, Any] = {}
        state = job.state
        # An agent handles SIGTERM once it has written its status file; signalled earlier, it would
        # die of the signal instead of stopping the job. Wait for all to be ready, unless some are
        # still waiting for a machine: then there is nothing to save, and they end now.
        if (
            state.status == TrainingJobStatus.STOPPING
            and not all(statuses)
            and not all(backend.placed(i["handle"]) for i in instances)
        ):
            for instance in instances:
                backend.kill(instance["handle"], Path(instance["dir"]))
        if (
            state.status == TrainingJobStatus.STOPPING
            and not job.runtime.get("stop_signalled")
            and all(statuses)
        ):
            for instance in instances:
                backend.signal(instance["handle"], signal.SIGTERM)
            changes["stop_signalled"] = True
        # Replay the phases algo-1 went through, at the times it recorded, even those a fast job
        # passed between two looks.
        offsets = self._read_utilization(job, instances)
        if offsets is not None:
            changes["utilization_offsets"] = offsets
        ledger = self._costs.job_key(job)  # the attempt's interval opens when its instances start work
        finishing = all(s.get("outcome") for s in statuses)  # then the end records it in one go
        if statuses[0].get("started") and job.runtime.get("ledger") != ledger and not finishing:
            self._costs.job_started(job, dt.datetime.fromisoformat(statuses[0]["started"]))
            changes["ledger"] = ledger
        phases = statuses[0].get("phases", [])
        seen = int(job.runtime.get("phases_seen", 0))
        for entry in phases[seen:]:
            if entry["phase"] in _PHASES and state.status == TrainingJobStatus.IN_PROGRESS:
                state = state.advance(_PHASES[entry["phase"]], dt.datetime.fromisoformat(entry["time"]))
        if len(phases) > seen:
            changes["phases_seen"] = len(phases)
        points, offset = self._parse_metrics(job, Path(instances[0]["dir"]) / "log.jsonl")
        if offset is not None:
            changes["metric_offset"] = offset
            steps = dict(job.runtime.get("metric_steps", {}))
            for p in points:
                steps[p.name] = p.step + 1
            changes["metric_steps"] = steps
        done = all(s.get("outcome") for s in statuses)
        if not done:
            for instance, status in zip(instances, statuses, strict=True):
                if status.get("outcome") or backend.is_alive(instance["handle"]):
                    continue
                status = _read_json(Path(instance["dir"]) / "status.json")  # it may have just finished
                if not status.get("outcome"):
                    self._agent_died(job, backend, instance, points, changes)
                    return
        if done:
            final = self._finish(job, state, statuses, points, now)
            self._repos[job.kind].modify(
                job.name,
                lambda j: dataclasses.replace(final, runtime={**final.runtime, **changes}),
                metric_points=points,
            )
            return
        if changes or state != job.state or points:
            self._repos[job.kind].modify(
                job.name,
                lambda j: dataclasses.replace(
                    j, state=_merge_state(j, state), runtime={**j.runtime, **changes}
                ),
                metric_points=points,
            )

    def _read_utilization(self, job: Job[Any], instances: list[dict[str, Any]]) -> dict[str, int] | None:
        """Store the utilization samples the instances wrote since the last look; the new
        offsets (None when there was nothing new)."""
        offsets = dict(job.runtime.get("utilization_offsets", {}))
        samples: list[Sample] = []
        for instance in instances:
            offset = offsets.get(instance["dir"], 0)
            try:
                with (Path(instance["dir"]) / "utilization.jsonl").open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only
            for line in data[:end].splitlines():
                samples.append(Sample.from_json(instance["host"], json.loads(line)))
            offsets[instance["dir"]] = offset + end
        if not samples:
            return None
        self._utilization.add(job.kind, job.name, samples)
        return offsets

    def _agent_died(
        self,
        job: Job[Any],
        backend: Backend,
        instance: Mapping[str, Any],
        points: list[MetricPoint],
        changes: dict[str, Any],
    ) -> None:
        attempt = int(job.runtime.get("attempt", 0))
        lost = backend.lost(instance["handle"])
        for other in job.runtime["instances"]:
            backend.kill(other["handle"], Path(other["dir"]))
        self._costs.attempt_lost(job, utcnow())
        reason = (
            f"InternalServerError: {instance['host']} was lost: {lost}"
            if lost
            else f"InternalServerError: the instance agent of {instance['host']} exited without reporting an "
            f"outcome (see {instance['dir']}/agent.log)"
        )
        if attempt < job.spec.max_retry_attempts and job.state.status == TrainingJobStatus.IN_PROGRESS:
            log.warning("Training job %s: %s; retrying (attempt %d)", job.name, reason, attempt + 1)

            def retry(j: Job[Any]) -> Job[Any]:
                runtime = {
                    k: v
                    for k, v in j.runtime.items()
                    if k not in ("instances", "placement", "stop_signalled", "phases_seen")
                }
                runtime.update({k: v for k, v in changes.items() if k != "phases_seen"})
                runtime.update(attempt=attempt + 1, metric_offset=0)
                return dataclasses.replace(
                    j, runtime=runtime, state=j.state.advance(SecondaryStatus.STARTING, utcnow())
                )

            self._repos[job.kind].modify(job.name, retry, metric_points=points)
            return
        now = utcnow()
        stopping = job.state.status == TrainingJobStatus.STOPPING  # it was being stopped anyway
        status = TrainingJobStatus.STOPPED if stopping else TrainingJobStatus.FAILED
        secondary = SecondaryStatus.STOPPED if stopping else SecondaryStatus.FAILED
        failure: str | None = None if stopping else reason
        self._repos[job.kind].modify(
            job.name,
            lambda j: dataclasses.replace(
                j, state=j.state.finish(status, secondary, now, failure), runtime={**j.runtime, **changes}
            ),
            metric_points=points,
        )

    def _finish(
        self,
        job: Job[Any],
        state: Any,
        statuses: list[dict[str, Any]],
        points: list[MetricPoint],
        now: dt.datetime,
    ) -> Job[Any]:
        outcomes = [s["outcome"] for s in statuses]
        failure = None
        message = ""
        if "Failed" in outcomes:
            index = outcomes.index("Failed")
            failure = statuses[index].get("failure_reason") or "AlgorithmError: the training script failed"
            if len(outcomes) > 1:
                failure = f"{hosts_for(len(outcomes))[index]}: {failure}"
            status, secondary = TrainingJobStatus.FAILED, SecondaryStatus.FAILED
        elif job.state.status == TrainingJobStatus.STOPPING or "Stopped" in outcomes:
            status, secondary = TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED
        elif "MaxRuntimeExceeded" in outcomes:
            status, secondary = TrainingJobStatus.STOPPED, SecondaryStatus.MAX_RUNTIME_EXCEEDED
            message = (
                next(s.get("failure_reason") for s in statuses if s["outcome"] == "MaxRuntimeExceeded") or ""
            )
        else:
            status, secondary = TrainingJobStatus.COMPLETED, SecondaryStatus.COMPLETED
        started = [dt.datetime.fromisoformat(s["started"]) for s in statuses if s.get("started")]
        ended = [dt.datetime.fromisoformat(s["training_end"]) for s in statuses if s.get("training_end")]
        start = min(started) if started else now
        end = max(ended) if ended else now
        final_state = state.finish(status, secondary, end, failure)
        if message:
            last = dataclasses.replace(final_state.transitions[-1], message=message)
            final_state = dataclasses.replace(final_state, transitions=(*final_state.transitions[:-1], last))
        final_state = dataclasses.replace(final_state, training_start=start, training_end=end)
        seconds = max(1, round((end - start).total_seconds()))  # billed by the second, at least one
        billable = seconds * job.spec.instance_count
        # The billed interval ends when the job did: rounded up to a whole second it starts a
        # little earlier rather than ending in the future (a report made at once would clip it).
        cost, sagemaker_cost = self._costs.job_ended(job, end - dt.timedelta(seconds=seconds), end)
        price = self._costs.price(job.spec.instance_type, JobKind(job.kind)).site
        series: dict[str, list[MetricPoint]] = {}
        if job.spec.metric_definitions:
            training = self._repos["training"]
            assert isinstance(training, TrainingJobRepository)
            series = training.metric_series(job.name)
        for p in points:
            series.setdefault(p.name, []).append(p)
        final_metrics = [
            {"MetricName": name, "Value": values[-1].value, "Timestamp": values[-1].timestamp.isoformat()}
            for name, values in sorted(series.items())
        ]
        first = statuses[0]
        return dataclasses.replace(
            job,
            state=final_state,
            runtime={
                **job.runtime,
                "model_artifacts": first.get("model_artifacts"),
                "output_artifacts": first.get("output_artifacts"),
                "training_seconds": seconds,
                "billable_seconds": billable,
                "cost_usd": str(cost),
                "sagemaker_cost_usd": str(sagemaker_cost),
                "price_per_hour_usd": str(price),
                "final_metrics": final_metrics,
                "exit_codes": [s.get("exit_code") for s in statuses],
            },
        )

    def _parse_metrics(self, job: Job[Any], log_path: Path) -> tuple[list[MetricPoint], int | None]:
        """New metric points in algo-1's log since the recorded offset (each regex match is a step)."""
        if not job.spec.metric_definitions:
            return [], None
        offset = int(job.runtime.get("metric_offset", 0))
        try:
            with log_path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], None
        end = data.rfind(b"\n") + 1  # only whole lines; a partial one waits for the next pass
        if end == 0:
            return [], None
        patterns = [(m.name, _compile(m.regex)) for m in job.spec.metric_definitions]
        steps = dict(job.runtime.get("metric_steps", {}))
        points: list[MetricPoint] = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for name, pattern in patterns:
                if pattern is None:
                    continue
                match = pattern.search(record["m"])
                if match is None:
                    continue
                try:
                    value = float(match.group(1) if match.groups() else match.group(0))
                except (ValueError, IndexError):
                    continue
                step = steps.get(name, 0)
                steps[name] = step + 1
                points.append(
                    MetricPoint(name, value, dt.datetime.fromtimestamp(record["t"] / 1000, dt.UTC), step)
                )
        return points, offset + end

    def _fail(self, job: Job[Any], reason: str) -> None:
        now = utcnow()
        try:
            self._repos[job.kind].modify(
                job.name,
                lambda j: j.with_state(
                    j.state.finish(TrainingJobStatus.FAILED, SecondaryStatus.FAILED, now, reason)
                ),
            )
        except ShipyardError:
            log.exception("%s job %s: could not record its failure", job.kind.capitalize(), job.name)


def _job_dir(jobs_dir: Path, job: Job[Any]) -> Path:
    """A job's folder: ``jobs/<name>`` for training jobs, ``jobs/_<kind>/<name>`` for the others
    (each kind has names of its own, and no job name begins with ``_``)."""
    return jobs_dir / job.name if job.kind == "training" else jobs_dir / f"_{job.kind}" / job.name


def _volume_gb(request: Mapping[str, Any]) -> int:
    """The storage volume a job's request asks for (SageMaker's default, 30 GB, if none)."""
    resources = (
        request.get("ResourceConfig") or (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    )
    return int(resources.get("VolumeSizeInGB") or 30)


def _merge_state(current: Job[Any], observed: Any) -> Any:
    """A stop may have been requested between this pass's read and its write: keep it."""
    if current.state.status == TrainingJobStatus.STOPPING:
        return observed.stopping(utcnow())
    return observed


def _compile(regex: str) -> re.Pattern[str] | None:
    try:
        return re.compile(regex)
    except re.error:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
