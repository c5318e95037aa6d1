"""Ray for florence's long jobs (``florence label --engine ray``, ``florence test --engine ray``): the
cluster joined, or a local one started, once per process, and Ray Data set to stream quietly under
florence's own progress. Ray is the ``ray`` extra, imported only here."""
from __future__ import annotations

__all__ = ["ray_data", "check_engine"]


def ray_data(address=None, job="--engine ray"):
    """The ``ray`` module, connected to ``address`` (``"auto"``, ``"ray://host:10001"``; None: the
    cluster this process is in, else a local one of this machine's CPUs), with Ray Data's own progress
    bars and start-up messages off. ``job`` names what needs it, for the error when Ray is absent."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"{job} needs Ray Data: bash tools/install.sh --ray "
                          "(pip install 'florence-vision[ray]')") from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # florence's own bar, on the driver
    context.print_on_execution_start = False
    return ray


def check_engine(job: str, engine: str, replicas: int = 1, cpus_per_replica: float = 1,
                 gpus_per_replica: float = 0) -> None:
    """A ``ValueError`` naming ``job`` for an engine other than ``"local"`` / ``"ray"``, or for Ray
    resources no replica can have; before anything starts."""
    if engine not in ("local", "ray"):
        raise ValueError(f"{job}: engine is 'local' or 'ray', got {engine!r}")
    if engine == "ray" and not (replicas >= 1 and cpus_per_replica >= 0 and gpus_per_replica >= 0):
        raise ValueError(f"{job}: engine='ray' needs replicas >= 1 and CPUs / GPUs per replica >= 0, got {replicas} "
                         f"replicas of {cpus_per_replica} CPUs and {gpus_per_replica} GPUs")
