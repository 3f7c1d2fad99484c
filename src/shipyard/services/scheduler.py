"""The scheduler: places waiting jobs (training, processing, transform) on their backend and
follows running ones.

One thread, one loop. Each pass reads the active jobs from the store (the only source of truth),
launches waiting ones in the order ``core/fairshare.py`` decides (dominant-resource fairness
across users, first come first served within a user, within each user's and group's quotas:
``core/quotas.py``), telling each job that waits why in its Pending transition, and for launched ones reads what their
agents wrote in their :class:`~shipyard.runtime.contract.InstanceFolder` — the
:class:`~shipyard.runtime.contract.AgentStatus` and the log — and applies the rules of
``core/outcomes.py`` to it: secondary-status transitions, metric points, and at the end the
verdict, artifacts, times and billing, written to the store once per pass. Nothing is kept only in
memory, so a restarted server picks up exactly where the last one was; agents run on meanwhile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.compute import Backend, Backends, InstanceLaunch
from shipyard.core import fairshare, outcomes
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.devices import GpusBusy
from shipyard.core.jobs import Billing, InstanceRecord, Job, JobRun, JobState
from shipyard.core.placement import Placement, Resources, plan
from shipyard.core.quotas import Bound
from shipyard.core.training import MetricPoint, SecondaryStatus, TrainingJobStatus
from shipyard.errors import ShipyardError, ValidationError
from shipyard.runtime.container import hosts_for
from shipyard.runtime.contract import AgentConfig, AgentStatus, InstanceFolder, JobApi, StoreAccess
from shipyard.services.costs import CostService
from shipyard.services.credentials import CredentialService
from shipyard.store import JobRepository, TrainingJobRepository
from shipyard.store.utilization import Sample, UtilizationRepository

log = logging.getLogger(__name__)

_ACTIVE_POLL = 0.1
# With no job active, what can start one wakes the loop (a new job, a tuning job or pipeline
# execution started, an agent's exit): the poll is only a safety net. Each pass reads the store,
# a few milliseconds of CPU on an idle server.
_IDLE_POLL = 5.0
_POOL_LABELS = {"local": "the machine", "ray": "the Ray cluster"}  # as a waiting job's message names them


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """What the server tells every agent it launches, the same for all jobs.

    Attributes:
        jobs_dir: Where job folders are made (``<data dir>/jobs``).
        object_store: How agents reach the object store.
        api: Where jobs' AWS clients reach this server (None: not pointed at it).
        stop_grace_seconds, utilization_seconds: As in :class:`AgentConfig`.
        hide: Host paths no sandbox may show (the data dir).
        envs_dir, sources, allow_server_python: The environment cache and package sources.
    """

    jobs_dir: Path
    object_store: StoreAccess
    api: JobApi | None = None
    stop_grace_seconds: float = 30.0
    utilization_seconds: float = 5.0
    hide: tuple[str, ...] = ()
    envs_dir: str | None = None
    sources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    allow_server_python: bool = True


class JobScheduler:
    """Runs in its own thread; :meth:`wake` makes it look now rather than at its next poll.
    :meth:`tick` is one pass, which tests drive directly."""

    def __init__(
        self,
        repositories: Sequence[JobRepository[Any]],
        backends: Backends,
        catalog: InstanceCatalog,
        costs: CostService,
        utilization: UtilizationRepository,
        agents: AgentSettings,
        *,
        fit_to_machine: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        credentials: CredentialService | None = None,
        quotas: Callable[[str | None], Sequence[Bound]] | None = None,
    ) -> None:
        self._repos = {r.kind: r for r in repositories}
        self._quotas = quotas or (lambda owner: ())  # the quotas an owner's work counts against
        self._credentials = credentials  # each attempt's own, revoked when its job ends
        self._backends = backends
        self._catalog = catalog
        self._costs = costs
        self._utilization = utilization
        self._agents = agents
        self._fit = fit_to_machine
        self._clock = clock
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
        """Run ``run_pass`` after each pass over jobs (tuning builds on training)."""
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
        names = {b.name for b in self._backends}
        # What still holds capacity once the running jobs were looked at: a job that ended in this
        # pass frees its instances for the jobs waiting now, not at the next pass.
        running: list[fairshare.Work] = []
        waiting: list[tuple[Job[Any], Backend, Placement]] = []
        for job in jobs:
            try:
                if job.run.launched and job.run.backend not in names:
                    self._unfollowed(job)
                elif job.run.launched:
                    if self._follow(job) and job.run.placement is not None:
                        running.append(
                            fairshare.Work(
                                job.run.owner, job.run.backend, job.run.placement, job.spec.instance_count
                            )
                        )
                else:
                    prepared = self._prepare(job)
                    if prepared is not None:
                        waiting.append((job, *prepared))
            except Exception as exc:
                log.exception("%s job %s: scheduler error", job.kind.capitalize(), job.name)
                self._fail(job, f"InternalServerError: {exc}")
        self._place(waiting, running)
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
                job.run.backend,
            )

    # -- placing ---------------------------------------------------------------------------------
    def _prepare(self, job: Job[Any]) -> tuple[Backend, Placement] | None:
        """A job not yet launched: its backend and placement; None when it ends here instead (a
        stop before launch, or a request its backend can no longer hold)."""
        if job.state.status == TrainingJobStatus.STOPPING:
            now = self._clock.now()
            self._modify(
                job,
                lambda j: j.with_state(
                    j.state.finish(TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED, now)
                ),
            )
            return None
        backend = self._backends.for_type(job.spec.instance_type)
        try:
            placement = plan(
                self._catalog.get(job.spec.instance_type),
                job.spec.instance_count,
                backend.capacity,
                node=backend.largest_node,
                gpu_memory_gib=backend.largest_gpu_memory_gib,
                fit_to_machine=self._fit,
            )
        except ValidationError as exc:
            self._fail(job, f"CapacityError: {exc.message}")
            return None
        return backend, placement

    def _place(
        self, waiting: Sequence[tuple[Job[Any], Backend, Placement]], running: Sequence[fairshare.Work]
    ) -> None:
        """Launch the waiting jobs ``core.fairshare.decide`` lets go; the others are Pending,
        saying why (and what waits for capacity is passed to each backend's ``demand``)."""
        key = {f"{job.kind}/{job.name}": (job, backend, placement) for job, backend, placement in waiting}
        owners = {job.run.owner for job, _, _ in waiting} | {work.owner for work in running}
        verdicts = fairshare.decide(
            [
                fairshare.Waiting(
                    name,
                    fairshare.Work(job.run.owner, backend.name, placement.per_instance, placement.count),
                    job.created,
                )
                for name, (job, backend, placement) in key.items()
            ],
            running,
            {
                b.name: fairshare.Pool(
                    b.capacity - b.reserved, b.available, _POOL_LABELS.get(b.name, f"the {b.name} backend")
                )
                for b in self._backends
            },
            {owner: tuple(self._quotas(owner)) for owner in owners},
        )
        demand: dict[str, list[Resources]] = {b.name: [] for b in self._backends}
        for verdict in verdicts:
            job, backend, placement = key[verdict.key]
            try:
                if verdict.launch:
                    try:
                        self._launch(job, backend, placement)
                    except GpusBusy as exc:  # held by what the fair share does not count (endpoints)
                        self._wait(job, str(exc))
                    except ValidationError as exc:  # the backend refused the request (Slurm's sbatch)
                        self._fail(job, f"ClientError: {exc.message}")
                    continue
                if verdict.for_capacity:
                    demand[backend.name] += [placement.per_instance] * placement.count
                self._wait(job, verdict.reason or SecondaryStatus.PENDING.message)
            except Exception as exc:
                log.exception("%s job %s: scheduler error", job.kind.capitalize(), job.name)
                self._fail(job, f"InternalServerError: {exc}")
        for backend in self._backends:
            backend.demand(demand[backend.name])

    def _wait(self, job: Job[Any], reason: str) -> None:
        """Pending, saying ``reason`` (written only when it changed)."""
        if job.state.secondary == SecondaryStatus.PENDING and job.state.transitions[-1].message == reason:
            return
        now = self._clock.now()
        self._modify(job, lambda j: j.with_state(j.state.waiting(reason, now)))

    def _launch(self, job: Job[Any], backend: Backend, placement: Placement) -> None:
        now = self._clock.now()
        launches = self._launches(job, backend, placement)
        handles = backend.launch(launches)
        launched_at = int(now.timestamp())
        instances = tuple(
            InstanceRecord(
                host=launch.agent_config.host,
                dir=str(launch.instance_dir),
                handle=handle,
                stream=f"{job.name}/{launch.agent_config.host}-{launched_at}",
                launched_at=launched_at * 1000,
            )
            for launch, handle in zip(launches, handles, strict=True)
        )

        def launched(j: Job[Any]) -> Job[Any]:
            state = j.state  # a job that waited starts again, its wait closed now
            if state.secondary == SecondaryStatus.PENDING:
                state = state.advance(SecondaryStatus.STARTING, now, "Launching the requested instances")
            return dataclasses.replace(
                j,
                state=state,
                run=j.run.replace(
                    instances=instances, placement=placement.per_instance, backend=backend.name
                ),
            )

        self._modify(job, launched)
        log.info(
            "%s job %s: launched %d instance(s) on %s",
            job.kind.capitalize(),
            job.name,
            len(instances),
            backend.name,
        )

    def _launches(self, job: Job[Any], backend: Backend, placement: Placement) -> list[InstanceLaunch]:
        """Each instance's folder and :class:`AgentConfig` (algo-1 first)."""
        agents = self._agents
        folder = job_dir(agents.jobs_dir, job.kind, job.name) / f"attempt-{job.run.attempt}"
        instance_type = self._catalog.get(job.spec.instance_type)
        api = agents.api
        if self._credentials is not None and api is not None:  # the job's own, never the server's
            session = self._credentials.for_job(job)
            api = dataclasses.replace(
                api,
                access_key_id=session.access_key_id,
                secret_access_key=session.secret_access_key,
                session_token=session.session_token,
                expiration=session.expiration.isoformat(),
            )
        launches = []
        for index, host in enumerate(hosts_for(job.spec.instance_count)):
            config = AgentConfig(
                kind=job.kind,
                request=dict(job.spec.request),
                host=host,
                host_index=index,
                object_store=agents.object_store,
                arn=job.arn,
                region=job.run.region,
                api=api,
                cpus=placement.per_instance.cpus,
                gpus=placement.per_instance.gpus,
                memory_bytes=instance_type.memory_gib * 2**30,
                disk_bytes=_volume_gb(job.spec.request) * 10**9,
                sandbox=getattr(backend, "sandbox", "off"),
                hide=agents.hide,
                python=sys.executable,
                environment=job.run.environment,
                envs_dir=agents.envs_dir,
                sources=agents.sources,
                allow_server_python=agents.allow_server_python,
                model=job.run.model,
                notes=(placement.scaled_down,) if placement.scaled_down else (),
                stop_grace_seconds=agents.stop_grace_seconds,
                utilization_seconds=agents.utilization_seconds,
            )
            launches.append(
                InstanceLaunch(
                    folder / host,
                    config,
                    job.spec.instance_type,
                    placement.per_instance,
                    gpu_memory_gib=instance_type.gpu_memory_gib,
                )
            )
        return launches

    # -- following -------------------------------------------------------------------------------
    def _follow(self, job: Job[Any]) -> bool:
        """Look at a launched job's instances; whether it still holds them (not ended or lost)."""
        backend = self._backends.named(job.run.backend)
        instances = job.run.instances
        folders = [InstanceFolder(Path(i.dir)) for i in instances]
        statuses = [f.read_status() for f in folders]
        changes: dict[str, Any] = {}
        state = job.state
        stopping = state.status == TrainingJobStatus.STOPPING
        # An agent handles SIGTERM once it has written its status file; signalled earlier, it would
        # die of the signal instead of stopping the job. Wait for all to be ready, unless some are
        # still waiting for a machine: then there is nothing to save, and they end now.
        reported = all(s.reported for s in statuses)
        if not reported and state.status == TrainingJobStatus.IN_PROGRESS:
            # A cluster's queue (Slurm's) may hold the launched instances: say why, until placed.
            reason = next((r for i in instances if (r := backend.waiting_reason(i.handle))), None)
            if reason is not None:
                state = state.waiting(reason, self._clock.now())
            elif state.secondary == SecondaryStatus.PENDING:
                state = state.advance(
                    SecondaryStatus.STARTING, self._clock.now(), "Launching the requested instances"
                )
        if stopping and not reported and not all(backend.placed(i.handle) for i in instances):
            for instance in instances:
                backend.kill(instance.handle, Path(instance.dir))
        if stopping and not job.run.stop_signalled and reported:
            for instance in instances:
                backend.signal(instance.handle, signal.SIGTERM)
            changes["stop_signalled"] = True
        offsets = self._read_utilization(job, instances)
        if offsets is not None:
            changes["utilization_offsets"] = offsets
        ledger = self._costs.job_key(job)  # the attempt's interval opens when its instances start work
        done = all(s.outcome for s in statuses)  # then the end records it in one go
        if statuses[0].started and job.run.ledger != ledger and not done:
            self._costs.job_started(job, dt.datetime.fromisoformat(statuses[0].started))
            changes["ledger"] = ledger
        phases = statuses[0].phases
        if len(phases) > job.run.phases_seen:
            new = [(p.name, dt.datetime.fromisoformat(p.time)) for p in phases[job.run.phases_seen :]]
            state = outcomes.replay_phases(state, new)
            changes["phases_seen"] = len(phases)
        points, offset, steps = self._read_metrics(job, folders[0])
        if offset is not None:
            changes["metric_offset"] = offset
            changes["metric_steps"] = steps
        if not done:
            for instance, folder, status in zip(instances, folders, statuses, strict=True):
                if status.outcome or backend.is_alive(instance.handle):
                    continue
                if not folder.read_status().outcome:  # it may have just finished
                    self._lost(job, backend, instance, points, changes)
                    return False
        if done:
            final = self._finish(job, state, statuses, points)
            self._modify(job, lambda j: dataclasses.replace(final, run=final.run.replace(**changes)), points)
            return False
        if changes or state != job.state or points:
            self._modify(
                job,
                lambda j: dataclasses.replace(
                    j, state=self._merge_state(j, state), run=j.run.replace(**changes)
                ),
                points,
            )
        return True

    def _read_utilization(self, job: Job[Any], instances: Sequence[InstanceRecord]) -> dict[str, int] | None:
        """Store the utilization samples the instances wrote since the last look; the new
        offsets (None when there was nothing new)."""
        offsets = dict(job.run.utilization_offsets)
        samples: list[Sample] = []
        for instance in instances:
            data, offset = _read_lines(
                InstanceFolder(Path(instance.dir)).utilization, offsets.get(instance.dir, 0)
            )
            for line in data:
                samples.append(Sample.from_json(instance.host, json.loads(line)))
            offsets[instance.dir] = offset
        if not samples:
            return None
        self._utilization.add(job.kind, job.name, samples)
        return offsets

    def _read_metrics(
        self, job: Job[Any], folder: InstanceFolder
    ) -> tuple[list[MetricPoint], int | None, dict[str, int]]:
        """New metric points in algo-1's log since the recorded offset, the new offset (None when
        nothing new was read) and the metrics' next steps."""
        steps = dict(job.run.metric_steps)
        if not job.spec.metric_definitions:
            return [], None, steps
        lines, offset = _read_lines(folder.log, job.run.metric_offset)
        if offset == job.run.metric_offset:
            return [], None, steps
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records.append((int(record["t"]), str(record["m"])))
        points, steps = outcomes.extract_metrics(records, job.spec.metric_definitions, steps)
        return points, offset, steps

    def _lost(
        self,
        job: Job[Any],
        backend: Backend,
        instance: InstanceRecord,
        points: list[MetricPoint],
        changes: dict[str, Any],
    ) -> None:
        """An instance's agent ended without an outcome: end the attempt, then retry or end the job."""
        backend_reason = backend.lost(instance.handle)
        preempted = backend.preempted(instance.handle)
        reason = self._without_host_paths(outcomes.lost_reason(instance.host, instance.dir, backend_reason))
        for other in job.run.instances:
            backend.kill(other.handle, Path(other.dir))
        self._costs.attempt_lost(job, self._clock.now())
        message = ""
        if preempted:  # as SageMaker's managed spot: again from the last checkpoint, not a retry
            stopping = (getattr(job.spec, "request", None) or {}).get("StoppingCondition") or {}
            verdict = outcomes.on_preempted(
                reason,
                preemptions=job.run.preemptions,
                status=job.state.status,
                waited_seconds=(self._clock.now() - job.created).total_seconds(),
                max_wait_seconds=stopping.get("MaxWaitTimeInSeconds"),
            )
            message = outcomes.restart_message(
                backend_reason or "preempted", getattr(job.spec, "checkpoint_s3_uri", None)
            )
        else:
            verdict = outcomes.on_lost_instance(
                reason,
                attempt=job.run.attempt - job.run.preemptions,
                max_retry_attempts=job.spec.max_retry_attempts,
                status=job.state.status,
            )
        if verdict is None:
            log.warning(
                "%s job %s: %s; %s (attempt %d)",
                job.kind.capitalize(),
                job.name,
                reason,
                "starting again" if preempted else "retrying",
                job.run.attempt + 1,
            )
            kept = {k: v for k, v in changes.items() if k != "phases_seen"}

            def retry(j: Job[Any]) -> Job[Any]:
                run = j.run.replace(**kept).next_attempt()
                if preempted:
                    run = run.replace(preemptions=run.preemptions + 1)
                now = self._clock.now()
                # a preempted job waits for its cluster again, saying why (its own transition)
                state = (
                    j.state.waiting(message, now)
                    if preempted
                    else j.state.advance(SecondaryStatus.STARTING, now)
                )
                return dataclasses.replace(j, run=run, state=state)

            self._modify(job, retry, points)
            return
        now = self._clock.now()
        self._modify(
            job,
            lambda j: dataclasses.replace(
                j,
                state=j.state.finish(verdict.status, verdict.secondary, now, verdict.failure_reason),
                run=j.run.replace(**changes),
            ),
            points,
        )

    def _finish(
        self, job: Job[Any], state: JobState, statuses: list[AgentStatus], points: list[MetricPoint]
    ) -> Job[Any]:
        hosts = hosts_for(len(statuses))
        ends = [
            outcomes.InstanceEnd(host, status.outcome, status.failure_reason)
            for host, status in zip(hosts, statuses, strict=True)
            if status.outcome is not None
        ]
        verdict = outcomes.judge(ends, stopping=job.state.status == TrainingJobStatus.STOPPING)
        if verdict.failure_reason:
            verdict = dataclasses.replace(
                verdict, failure_reason=self._without_host_paths(verdict.failure_reason)
            )
        billed = outcomes.billed(
            (dt.datetime.fromisoformat(s.started) for s in statuses if s.started),
            (dt.datetime.fromisoformat(s.training_end) for s in statuses if s.training_end),
            instance_count=job.spec.instance_count,
            now=self._clock.now(),
        )
        cost, sagemaker_cost = self._costs.job_ended(job, billed.interval_start, billed.ended)
        price = self._costs.job_price(job)  # for what it was granted
        series: dict[str, list[MetricPoint]] = {}
        if job.spec.metric_definitions:
            training = self._repos["training"]
            assert isinstance(training, TrainingJobRepository)
            series = training.metric_series(job.name)
        for p in points:
            series.setdefault(p.name, []).append(p)
        first = statuses[0]
        run: JobRun = job.run.replace(
            model_artifacts=first.model_artifacts,
            output_artifacts=first.output_artifacts,
            billing=Billing(
                billed.seconds, billed.billable_seconds, cost, sagemaker_cost, price.site, price.billed_as
            ),
            final_metrics=outcomes.final_metrics(series),
            exit_codes=tuple(s.exit_code for s in statuses),
        )
        return dataclasses.replace(
            job, state=outcomes.finish(state, verdict, billed.started, billed.ended), run=run
        )

    # -- writing -----------------------------------------------------------------------------------
    def _modify(
        self, job: Job[Any], change: Callable[[Job[Any]], Job[Any]], points: Sequence[MetricPoint] = ()
    ) -> None:
        changed = self._repos[job.kind].modify(job.name, change, metric_points=list(points))
        if self._credentials is not None and changed.state.status.is_terminal:
            self._credentials.revoke(changed.arn)  # every way a job ends passes here

    def _merge_state(self, current: Job[Any], observed: JobState) -> JobState:
        """A stop may have been requested between this pass's read and its write: keep it."""
        if current.state.status == TrainingJobStatus.STOPPING:
            return observed.stopping(self._clock.now())
        return observed

    def _without_host_paths(self, reason: str) -> str:
        """A failure reason as the job's user sees it: the data dir and home folder not named."""
        folders = {str(Path.home()): "~", **{path: "<data dir>" for path in self._agents.hide}}
        return outcomes.without_host_paths(reason, folders)

    def _fail(self, job: Job[Any], reason: str) -> None:
        reason = self._without_host_paths(reason)
        now = self._clock.now()
        try:
            self._modify(
                job,
                lambda j: j.with_state(
                    j.state.finish(TrainingJobStatus.FAILED, SecondaryStatus.FAILED, now, reason)
                ),
            )
        except ShipyardError:
            log.exception("%s job %s: could not record its failure", job.kind.capitalize(), job.name)


def job_dir(jobs_dir: Path, kind: str, name: str) -> Path:
    """A job's folder: ``jobs/<name>`` for training jobs, ``jobs/_<kind>/<name>`` for the others
    (each kind has names of its own, and no job name begins with ``_``)."""
    return jobs_dir / name if kind == "training" else jobs_dir / f"_{kind}" / name


def _volume_gb(request: Mapping[str, Any]) -> int:
    """The storage volume a job's request asks for (SageMaker's default, 30 GB, if none)."""
    resources = (
        request.get("ResourceConfig") or (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    )
    return int(resources.get("VolumeSizeInGB") or 30)


def _read_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """The whole lines of ``path`` after ``offset`` (a partial last one waits for the next look),
    and the offset after them."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end
