"""The client: job spec -> Volcano manifests, rank table, submit and manage jobs.

Never imports MindSpore; imports kubernetes lazily so `render` works without it configured.
"""
from .errors import (AlreadyExists, ApiError, ClientError, ClusterError, Forbidden, KubeconfigError,
                     NamespaceNotFound, NotFound, RankTableError, SpecError, Unreachable,
                     VolcanoNotInstalled, WaitTimeout)
from .launch_command import launch_command, launch_env
from .render import render, to_yaml
from .spec import JobSpec

__all__ = [
    "AlreadyExists", "ApiError", "ClientError", "ClusterError", "Forbidden", "JobSpec",
    "KubeconfigError", "NamespaceNotFound", "NotFound", "RankTableError", "SpecError",
    "Unreachable", "VolcanoNotInstalled", "WaitTimeout", "launch_command", "launch_env",
    "render", "to_yaml",
]
