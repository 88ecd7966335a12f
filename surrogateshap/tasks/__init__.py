"""Attribution tasks: contributors, a model family, utilities, and the games they make."""

from surrogateshap.tasks.base import DiffusionTask, ProxyGame, RetrainingGame

__all__ = ["DiffusionTask", "ProxyGame", "RetrainingGame", "get_task", "TASKS"]

TASKS = ("digits10",)


def get_task(name: str, scale: str = "default", **kwargs) -> DiffusionTask:
    """A task by name at a scale preset ("ci", "default", "paper")."""
    if name == "digits10":
        from surrogateshap.tasks.digits import Digits10Task

        return Digits10Task(scale=scale, **kwargs)
    raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
