"""Cluster I/O: the official `kubernetes` client, objects as plain dicts, errors translated.

`Cluster` is the only module that talks to the API server. Every call goes through the official
client's typed API methods with `_preload_content=False` (objects stay plain dicts, as the
manifests are) and every failure becomes one of the `errors.ClusterError` classes, chained to
the original exception. `kubernetes` is imported here, lazily, so that `render` and the rank
table tools run without it being configured.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from . import names
from .errors import (AlreadyExists, ApiError, ClusterError, Forbidden, KubeconfigError,
                     NamespaceNotFound, NotFound, Unreachable, VolcanoNotInstalled)

log = logging.getLogger(__name__)
T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
VOLCANO_JOBS = f"{names.VOLCANO_JOB_PLURAL}.{names.VOLCANO_GROUP}"
PODGROUPS = f"{names.PODGROUP_PLURAL}.{names.PODGROUP_GROUP}"
_INSTALL_VOLCANO = ("the cluster does not serve Volcano jobs (no API batch.volcano.sh/v1alpha1): "
                    "install Volcano (https://volcano.sh/en/docs/installation/) or check --context")


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An official `kubernetes.client.ApiClient` from a kubeconfig (or in-cluster config)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    env_paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    default_path = Path("~/.kube/config").expanduser()
    if kubeconfig is not None:
        if not Path(kubeconfig).expanduser().is_file():
            raise KubeconfigError(f"kubeconfig {kubeconfig!r} does not exist")
        source = kubeconfig
    elif env_paths:
        if not any(Path(p).expanduser().is_file() for p in env_paths):
            raise KubeconfigError(
                f"KUBECONFIG names no existing file ({os.environ['KUBECONFIG']}); "
                "fix it or pass --kubeconfig FILE")
        source = None  # the client reads KUBECONFIG itself
    elif default_path.is_file():
        source = str(default_path)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as e:
            raise KubeconfigError(f"cannot use the in-cluster service account: {e}") from e
        return client.ApiClient(configuration)
    else:
        raise KubeconfigError(
            "no Kubernetes configuration: ~/.kube/config does not exist and KUBECONFIG is not set; "
            "pass --kubeconfig FILE (or run inside the cluster)")
    try:
        config.load_kube_config(config_file=source, context=context,
                                client_configuration=configuration, persist_config=False)
    except ConfigException as e:
        where = source or os.environ.get("KUBECONFIG", "")
        if context is not None and "Expected object with name" in str(e):
            try:
                available = ", ".join(c["name"] for c in config.list_kube_config_contexts(source)[0])
            except (ConfigException, TypeError, KeyError):
                available = "?"
            raise KubeconfigError(
                f"context {context!r} is not in kubeconfig {where} (its contexts: {available})") from e
        raise KubeconfigError(f"cannot use kubeconfig {where}: {e}") from e
    return client.ApiClient(configuration)


def _status_body(e: Any) -> dict[str, Any]:
    try:
        body = json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        return {"message": str(e.body)[:300]}
    return body if isinstance(body, dict) else {}


class Cluster:
    """The API calls the client makes, on objects as dicts, with errors translated.

    Args:
        api_client: An official `kubernetes.client.ApiClient` (see `load_api_client`).
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._volcano_served: bool | None = None

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        return cls(load_api_client(kubeconfig, context))

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    # --- plumbing ---------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, verb: str, resource: str,
              namespace: str | None = None, name: str | None = None, **kwargs: Any) -> Any:
        """Call an API method raw and return the decoded JSON (or the raw response if streaming)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        stream = kwargs.pop("_stream", False)
        try:
            response = fn(*args, _preload_content=False, **kwargs)
        except ApiException as e:
            raise self._translate(e, verb=verb, resource=resource, namespace=namespace, name=name) from e
        except urllib3.exceptions.HTTPError as e:
            raise Unreachable(f"cannot reach the Kubernetes API at {self.host}: {_reason(e)}") from e
        if stream:
            return response
        data = response.data
        return json.loads(data) if data else {}

    def _translate(self, e: Any, *, verb: str, resource: str, namespace: str | None,
                   name: str | None) -> ClusterError:
        body = _status_body(e)
        message = body.get("message") or (e.reason or "")
        details = body.get("details") or {}
        what = f"{resource} {name!r}" if name else resource
        where = f" in namespace {namespace!r}" if namespace else ""
        status = e.status
        if status == 401:
            return KubeconfigError(
                f"unauthorized: the API server at {self.host} rejected the credentials of your "
                f"kubeconfig ({message}); log in again or check --context")
        if status == 403:
            return Forbidden(
                f"forbidden: you may not {verb} {resource}{where} (server: {message}); ask a "
                f"cluster admin to grant '{verb}' on '{resource}', e.g. by binding the Role "
                f"{names.SUBMITTER_ROLE} from manifests/cluster")
        if status == 404:
            if details.get("kind") == "namespaces" or (
                    namespace and f'namespaces "{namespace}" not found' in message):
                return NamespaceNotFound(
                    f"namespace {namespace!r} does not exist: create it (kubectl apply -k "
                    "manifests/cluster) or pass --namespace")
            if resource in (VOLCANO_JOBS, PODGROUPS) and not self.volcano_served():
                return VolcanoNotInstalled(_INSTALL_VOLCANO)
            if verb == "create":
                return NamespaceNotFound(
                    f"cannot create {resource}{where}: the server answered 404 ({message}); "
                    "check that the namespace exists")
            return NotFound(f"{what} not found{where}")
        if status == 409:
            if resource == VOLCANO_JOBS:
                return AlreadyExists(
                    f"a job named {name!r} already exists{where}: choose another --name, or "
                    f"remove it with: python -m operator_client cancel {name} -n {namespace}")
            return AlreadyExists(f"{what} already exists{where}")
        if status in (400, 422):
            return ApiError(f"the API server rejected {what}{where}: {message}")
        return ApiError(f"{verb} {what}{where} failed: HTTP {status} {message}".rstrip())

    def volcano_served(self) -> bool:
        """Whether the cluster serves batch.volcano.sh/v1alpha1 (API discovery, cached)."""
        if self._volcano_served is None:
            import urllib3
            from kubernetes.client.exceptions import ApiException

            try:
                self.custom.get_api_resources(names.VOLCANO_GROUP, names.VOLCANO_VERSION,
                                              _preload_content=False)
                self._volcano_served = True
            except ApiException as e:
                if e.status == 404:
                    self._volcano_served = False
                else:
                    raise self._translate(e, verb="get", resource="API discovery",
                                          namespace=None, name=None) from e
            except urllib3.exceptions.HTTPError as e:
                raise Unreachable(f"cannot reach the Kubernetes API at {self.host}: {_reason(e)}") from e
        return self._volcano_served

    def require_volcano(self) -> None:
        if not self.volcano_served():
            raise VolcanoNotInstalled(_INSTALL_VOLCANO)

    # --- Volcano jobs -------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        return self._call(self.custom.create_namespaced_custom_object, names.VOLCANO_GROUP,
                          names.VOLCANO_VERSION, namespace, names.VOLCANO_JOB_PLURAL, body,
                          verb="create", resource=VOLCANO_JOBS, namespace=namespace, name=name)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self.custom.get_namespaced_custom_object, names.VOLCANO_GROUP,
                          names.VOLCANO_VERSION, namespace, names.VOLCANO_JOB_PLURAL, name,
                          verb="get", resource=VOLCANO_JOBS, namespace=namespace, name=name)

    def list_jobs(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        data = self._call(self.custom.list_namespaced_custom_object, names.VOLCANO_GROUP,
                          names.VOLCANO_VERSION, namespace, names.VOLCANO_JOB_PLURAL,
                          verb="list", resource=VOLCANO_JOBS, namespace=namespace, **kwargs)
        return list(data.get("items") or [])

    def delete_job(self, namespace: str, name: str) -> None:
        self._call(self.custom.delete_namespaced_custom_object, names.VOLCANO_GROUP,
                   names.VOLCANO_VERSION, namespace, names.VOLCANO_JOB_PLURAL, name,
                   propagation_policy="Background",
                   verb="delete", resource=VOLCANO_JOBS, namespace=namespace, name=name)

    def list_podgroups(self, namespace: str) -> list[dict[str, Any]]:
        """PodGroups of the namespace; [] when we may not read them (extra information only)."""
        try:
            data = self._call(self.custom.list_namespaced_custom_object, names.PODGROUP_GROUP,
                              names.PODGROUP_VERSION, namespace, names.PODGROUP_PLURAL,
                              verb="list", resource=PODGROUPS, namespace=namespace)
        except (Forbidden, NotFound, VolcanoNotInstalled) as e:
            log.debug("cannot read podgroups: %s", e)
            return []
        return list(data.get("items") or [])

    # --- core objects -------------------------------------------------------------------

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        data = self._call(self.core.list_namespaced_pod, namespace, label_selector=label_selector,
                          verb="list", resource="pods", namespace=namespace)
        return list(data.get("items") or [])

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self.core.read_namespaced_pod, name, namespace,
                          verb="get", resource="pods", namespace=namespace, name=name)

    def create_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        return self._call(self.core.create_namespaced_config_map, namespace, body,
                          verb="create", resource="configmaps", namespace=namespace, name=name)

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self.core.read_namespaced_config_map, name, namespace,
                          verb="get", resource="configmaps", namespace=namespace, name=name)

    def patch_configmap(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.core.patch_namespaced_config_map, name, namespace, patch,
                          _content_type=MERGE_PATCH,
                          verb="patch", resource="configmaps", namespace=namespace, name=name)

    def delete_configmap(self, namespace: str, name: str) -> None:
        self._call(self.core.delete_namespaced_config_map, name, namespace,
                   verb="delete", resource="configmaps", namespace=namespace, name=name)

    def pod_log(self, namespace: str, pod: str, *, follow: bool = False, timestamps: bool = False,
                since_seconds: int | None = None, read_timeout: float | None = None) -> Any:
        """The raw (streaming) response of `pods/<pod>/log`; iterate it with `iter_lines`."""
        kwargs: dict[str, Any] = {"follow": follow, "timestamps": timestamps}
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        if read_timeout is not None:
            kwargs["_request_timeout"] = (10.0, read_timeout)
        return self._call(self.core.read_namespaced_pod_log, pod, namespace, _stream=True,
                          verb="get", resource="pods/log", namespace=namespace, name=pod, **kwargs)

    # --- the data volume's Jobs and pods (operator_client.data) -------------------------

    @property
    def batch(self) -> Any:
        if getattr(self, "_batch", None) is None:
            from kubernetes import client

            self._batch = client.BatchV1Api(self.api_client)
        return self._batch

    def require_namespace(self, namespace: str) -> None:
        """NamespaceNotFound unless `namespace` exists; nothing when we may not read namespaces
        (a namespaced Role such as sop-submitter cannot)."""
        try:
            self._call(self.core.read_namespace, namespace, verb="get", resource="namespaces",
                       namespace=namespace, name=namespace)
        except Forbidden:
            pass

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        return self._call(self.core.create_namespaced_pod, namespace, body,
                          verb="create", resource="pods", namespace=namespace, name=name)

    def delete_pod(self, namespace: str, name: str) -> None:
        self._call(self.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0,
                   verb="delete", resource="pods", namespace=namespace, name=name)

    def create_batch_job(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        return self._call(self.batch.create_namespaced_job, namespace, body,
                          verb="create", resource="jobs.batch", namespace=namespace, name=name)

    def get_batch_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self.batch.read_namespaced_job, name, namespace,
                          verb="get", resource="jobs.batch", namespace=namespace, name=name)

    def exec_stream(self, namespace: str, pod: str, command: list[str], *,
                    container: str | None = None) -> Any:
        """Start `command` in a running pod with stdin/stdout/stderr attached (`kubectl exec -i`).

        Returns the official client's WSClient (binary frames): write_stdin(bytes),
        close_channel(0) to end stdin (v5 protocol), update/read_stdout/read_stderr, returncode.
        """
        import re

        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        kwargs: dict[str, Any] = {"container": container} if container else {}
        try:
            return stream(self.core.connect_get_namespaced_pod_exec, pod, namespace,
                          command=command, stdin=True, stdout=True, stderr=True, tty=False,
                          _preload_content=False, binary=True, **kwargs)
        except ApiException as e:
            reason = str(e.reason or e)
            match = re.search(r"Handshake status (\d{3})", reason)
            status = int(match.group(1)) if match else None
            if status == 403:
                raise Forbidden(
                    f"forbidden: you may not create pods/exec in namespace {namespace!r}; ask a "
                    f"cluster admin to grant 'create' on 'pods/exec' (the Role "
                    f"{names.SUBMITTER_ROLE} from manifests/cluster has it)") from e
            if status == 404:
                raise NotFound(f"pod {pod!r} not found in namespace {namespace!r}") from e
            if status is None:
                raise Unreachable(f"cannot open an exec stream to pod {pod} at {self.host}: "
                                  f"{reason.splitlines()[0][:200]}") from e
            raise ApiError(f"exec in pod {pod} failed: HTTP {status}") from e


def iter_lines(response: Any) -> Iterator[str]:
    """Lines of a streaming HTTP response as they arrive (the last one even without newline)."""
    buffer = bytearray()
    try:
        for chunk in response.stream(amt=None, decode_content=True):
            buffer.extend(chunk)
            while (cut := buffer.find(b"\n")) != -1:
                yield buffer[:cut].decode("utf-8", errors="replace").rstrip("\r")
                del buffer[:cut + 1]
    finally:
        response.release_conn()
    if buffer:
        yield buffer.decode("utf-8", errors="replace")


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    return str(reason or e)
