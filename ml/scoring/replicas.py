"""The scoring service as Ray Serve replicas: each replica runs the very app `create_app` builds.

A replica is one Ray actor (one process, `cpus_per_replica` of the cluster's CPUs) that builds its
own app from the same arguments `trustlake serve` would give uvicorn, so everything the app does
holds per replica: its limits (max_in_flight, body size and time, image pool), its micro-batching and
its canary. Ray Serve's proxy takes the HTTP requests and hands each to a replica; a replica names
itself in every answer (the `X-Trustlake-Replica` header, `replica` in /v1/stats).

The replicas share nothing but the model registry: each one's `ChampionCache` checks registry.json
on every request and reloads the champion when it changed, so a promotion or a rollback reaches
every replica on its next request, with no restart and no message between them. On a cluster of
several machines the models directory must therefore be the same shared path on every node.

The app is built in the replica (`__serve_build_asgi_app__`, Ray Serve's late-bound ingress) rather
than built once and shipped: an app holds thread pools, locks and a loaded model, which are neither
picklable nor meant to be shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray import serve
from ray.serve import Application

from ml.scoring.serving import ServingLimits, create_app
from ml.scoring.traffic import Canary

DEPLOYMENT = "scoring"  # the Ray Serve deployment's name, shown in `serve status` and Ray's logs


@dataclass(frozen=True)
class ReplicaConfig:
    """How many replicas Ray Serve runs and what each one gets; `trustlake serve --ray` fills it from
    settings (TRUSTLAKE_SERVE_NUM_REPLICAS, ... ; `--replicas` wins)."""

    num_replicas: int = 1
    cpus_per_replica: float = 1.0  # Ray CPUs reserved by each replica; scoring is CPU-bound
    # Requests Ray Serve hands one replica at once; the rest wait in Ray's queue for a free replica.
    # Unset: the replica's max_in_flight, so the app's own load shedding (503 + Retry-After) stays the
    # limit, and a replica sees enough requests at once to micro-batch them.
    max_ongoing_requests: int | None = None

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {self.num_replicas}")
        if not self.cpus_per_replica > 0:
            raise ValueError(f"cpus_per_replica must be positive, got {self.cpus_per_replica}")
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < 1:
            raise ValueError(f"max_ongoing_requests must be at least 1, got {self.max_ongoing_requests}")

    @property
    def cpus(self) -> float:
        """The CPUs every replica together reserves."""
        return self.num_replicas * self.cpus_per_replica


@serve.deployment(name=DEPLOYMENT)
@serve.ingress()
class ScoringReplica:
    """One replica: keeps `create_app`'s arguments, and Ray Serve builds the app from them in the replica."""

    def __init__(self, models_dir: Path, limits: ServingLimits, banks_dir: Path | None, canary: Canary | None):
        self.arguments = (models_dir, limits, banks_dir, canary)

    def __serve_build_asgi_app__(self):
        models_dir, limits, banks_dir, canary = self.arguments
        replica = serve.get_replica_context().replica_tag
        return create_app(models_dir, limits, banks_dir=banks_dir, canary=canary, replica=replica)


def scoring_application(
    models_dir: Path,
    limits: ServingLimits,
    replicas: ReplicaConfig,
    banks_dir: Path | None = None,
    canary: Canary | None = None,
) -> Application:
    """The Ray Serve application `serve.run` deploys: `replicas.num_replicas` replicas of the app."""
    return ScoringReplica.options(
        num_replicas=replicas.num_replicas,
        max_ongoing_requests=replicas.max_ongoing_requests or limits.max_in_flight,
        ray_actor_options={"num_cpus": replicas.cpus_per_replica},
    ).bind(Path(models_dir), limits, banks_dir, canary)
