"""Prometheus metrics of one controller, in its own registry.

A private `CollectorRegistry` (not prometheus-client's global one) keeps two controllers
in one process, as tests run them, from sharing counters, and keeps library metrics out.
Names follow Prometheus conventions: `_total` counters, `_seconds` durations.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from qrelease.engine.monitor import JobChange

PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
RELEASE = ["env", "app", "version"]


class Metrics:
    """Every metric the controller exports, and how a pass, a fetch or a webhook updates them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.replica: str | None = None  # set when replicas share a store: every sample says which
        r = self.registry
        self.reconcile_seconds = Histogram(
            "qrelease_reconcile_duration_seconds",
            "Wall time of one reconcile pass.",
            registry=r,
            buckets=PASS_BUCKETS,
        )
        self.passes = Counter(
            "qrelease_reconcile_passes",
            "Reconcile passes by outcome (succeeded, failed, error).",
            ["outcome"],
            registry=r,
        )
        self.apps = Gauge(
            "qrelease_apps",
            "Apps per environment by sync and health.",
            ["env", "sync", "health"],
            registry=r,
        )
        self.held = Gauge(
            "qrelease_apps_held",
            "Apps whose rollout is Held, per environment and cause: a failing policy check"
            " (soak, window, approvals, ...), suspended, invalid, target, unverified or"
            " environment. A hold failing two checks counts under both.",
            ["env", "cause"],
            registry=r,
        )
        self.leases = Gauge(
            "qrelease_leases_held",
            "Environment leases this replica holds (several replicas share a store).",
            registry=r,
        )
        self.gates = Counter(
            "qrelease_gate_outcomes",
            "Quantum gate results by gate and outcome.",
            ["gate", "outcome"],
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "qrelease_source_fetch_duration_seconds",
            "Wall time of one fetch of the GitOps repo.",
            registry=r,
            buckets=FETCH_BUCKETS,
        )
        self.last_fetch = Gauge(
            "qrelease_source_last_fetch_timestamp_seconds",
            "Unix time of the last successful fetch.",
            registry=r,
        )
        self.source_errors = Counter(
            "qrelease_source_errors", "Failed fetches of the GitOps repo.", registry=r
        )
        self.source_up = Gauge(
            "qrelease_source_up", "1 when the last fetch succeeded, else 0.", registry=r
        )
        self.webhooks = Counter(
            "qrelease_webhook_requests",
            "Webhook calls by provider and result (accepted, unauthorized, too_large, disabled).",
            ["provider", "result"],
            registry=r,
        )
        self.notifications = Counter(
            "qrelease_notifications",
            "Notification attempts by channel and result (delivered, retried, dropped).",
            ["channel", "result"],
            registry=r,
        )
        self.web_requests = Counter(
            "qrelease_web_requests",
            "Requests to the web view by page and status code.",
            ["page", "code"],
            registry=r,
        )

        self.quantum_jobs = Counter(
            "qrelease_quantum_jobs",
            "Quantum jobs of each release as this controller read them from the workspace:"
            " status submitted when first seen, then Succeeded, Failed or Cancelled when"
            " it ended.",
            [*RELEASE, "status"],
            registry=r,
        )
        self.quantum_queue = Histogram(
            "qrelease_quantum_job_queue_seconds",
            "How long each release's quantum jobs waited before executing.",
            RELEASE,
            registry=r,
            buckets=JOB_BUCKETS,
        )
        self.quantum_execution = Histogram(
            "qrelease_quantum_job_execution_seconds",
            "How long each release's quantum jobs executed.",
            RELEASE,
            registry=r,
            buckets=JOB_BUCKETS,
        )
        self.quantum_cost = Counter(
            "qrelease_quantum_job_cost",
            "What each release's ended quantum jobs cost, as the service reports it.",
            [*RELEASE, "currency"],
            registry=r,
        )
        self.quantum_read_errors = Counter(
            "qrelease_quantum_job_read_errors",
            "Reads of an environment's workspace jobs that failed.",
            ["env"],
            registry=r,
        )

    def record_jobs(self, changes: Iterable[JobChange], errors: Iterable[str] = ()) -> None:
        """Count what one read of the workspaces found new: jobs, endings, times, cost."""
        for change in changes:
            job = change.job
            release = {"env": job.env, "app": job.app, "version": job.version}
            if change.submitted:
                self.quantum_jobs.labels(**release, status="submitted").inc()
            if change.began and job.queue_seconds is not None:
                self.quantum_queue.labels(**release).observe(job.queue_seconds)
            if not change.ended:
                continue
            self.quantum_jobs.labels(**release, status=str(job.status)).inc()
            if job.execution_seconds is not None:
                self.quantum_execution.labels(**release).observe(job.execution_seconds)
            if job.cost is not None:
                currency = job.currency or "unknown"
                self.quantum_cost.labels(**release, currency=currency).inc(job.cost)
        for env in errors:
            self.quantum_read_errors.labels(env=env).inc()

    def record_fetch(self, seconds: float, ok: bool, at: float) -> None:
        """Count one fetch: its duration, and either the success time or one more error."""
        self.fetch_seconds.observe(seconds)
        self.source_up.set(1 if ok else 0)
        if ok:
            self.last_fetch.set(at)
        else:
            self.source_errors.inc()

    def record_pass(
        self, seconds: float, outcome: str, gate_outcomes: Iterable[tuple[str, str]]
    ) -> None:
        """Count one pass, its duration and the gate results it recorded."""
        self.reconcile_seconds.observe(seconds)
        self.passes.labels(outcome=outcome).inc()
        for (gate, result), count in Tally(gate_outcomes).items():
            self.gates.labels(gate=gate, outcome=result).inc(count)

    def record_apps(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Replace the apps gauge with counts of (env, sync, health) over the status rows."""
        self.apps.clear()
        for (env, sync, health), count in Tally(rows).items():
            self.apps.labels(env=env, sync=sync, health=health).set(count)

    def record_holds(self, holds: Iterable[tuple[str, str]]) -> None:
        """Replace the held gauge with counts over (env, hold step) of the Held rows."""
        self.held.clear()
        causes = Tally(
            (env, cause or "other") for env, step in holds for cause in (step or "").split(",")
        )
        for (env, cause), count in causes.items():
            self.held.labels(env=env, cause=cause).set(count)

    def record_leases(self, held: int) -> None:
        """How many environment leases this replica holds."""
        self.leases.set(held)

    def record_notification(self, channel: str, result: str) -> None:
        """Count one delivery attempt."""
        self.notifications.labels(channel=channel, result=result).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (each sample labelled with the replica)."""
        if self.replica is None:
            return generate_latest(self.registry)
        return generate_latest(_Labelled(self.registry, self.replica))


class _Labelled:
    """A registry's metrics with a `replica` label added to every sample."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry, self.replica = registry, replica

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labelled.add_sample(
                    sample.name,
                    {**sample.labels, "replica": self.replica},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
            yield labelled
