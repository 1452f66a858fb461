"""The client's exceptions. Every `ClientError` is something the user can fix: the CLI prints its
message as one line `error: ...` on stderr and exits with code 2, without a traceback.

Cluster errors keep the original API exception as their cause (`raise ... from e`), so the
HTTP status and the server's message stay available to callers and in `-v` output.
"""
from __future__ import annotations


class ClientError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class SpecError(ClientError, ValueError):
    """An invalid job specification (bad loss, device count, image, name, ...)."""


class RankTableError(ClientError, ValueError):
    """Rank-table input that cannot make a valid HCCL table (bad IPs, duplicate devices, ...)."""


class ClusterError(ClientError):
    """Talking to the Kubernetes API failed."""


class KubeconfigError(ClusterError):
    """No usable Kubernetes client configuration (no kubeconfig, unknown context)."""


class VolcanoNotInstalled(ClusterError):
    """The cluster does not serve the Volcano Job API (404 on batch.volcano.sh)."""


class Forbidden(ClusterError):
    """The API refused the request (403); the message names the missing verb and resource."""


class AlreadyExists(ClusterError):
    """An object with that name already exists (409)."""


class NamespaceNotFound(ClusterError):
    """The namespace does not exist."""


class NotFound(ClusterError):
    """The named object (job, pod) does not exist."""


class Unreachable(ClusterError):
    """The API server could not be reached."""


class ApiError(ClusterError):
    """Any other failure answered by the API server."""


class WaitTimeout(Exception):
    """Waiting for a job (or its pods) took longer than the given timeout.

    Not a user error: the CLI reports it on one line and exits with code 124.
    """
