"""A Kubernetes API server for the tests: kmock's KubernetesEmulator, served over loopback HTTP.

kmock 0.8 is "simplistic" by its own words; this subclass closes the gaps that matter for the
client (see /work/shared/reference/platform-facts.md):

- a missing object answers 404 with reason NotFound and the API server's message;
- namespaces are stored and served (kmock cannot parse their paths), and a create into a
  namespace that does not exist answers 404 `namespaces "x" not found`;
- only declared resources exist: anything else answers 404 "the server could not find the
  requested resource", as a real API server does for a CRD that is not installed;
- create answers 201 with the stored object, and assigns uid, creationTimestamp and
  resourceVersion; a duplicate answers 409 AlreadyExists;
- discovery of the core group says "v1" (not "/v1"), which kubectl needs;
- list applies labelSelector (equality, inequality, existence) and says what kind it lists;
- `forbidden` makes chosen (verb, resource) pairs answer 403 with the API server's message;
- `pods/<name>/log` is served from `logs`, a per-pod list of lines that the test appends to,
  with follow, timestamps and sinceSeconds; a follow stream ends when the pod has finished,
  `drop_after` breaks one stream off after N lines (a lost connection) and `unreachable_logs`
  answers 500 as when a node's kubelet is gone.

Volcano's controller and the Ascend device plugin are not emulated: `Player` plays them
through the official client (create the pods of a job, annotate, move phases).
"""
from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import re
import threading
import time
import uuid
from typing import Any

import aiohttp.web
import kmock
from kmock._internal.k8s import KubernetesError

PODS = kmock.resource("", "v1", "pods")
# kmock 0.8 cannot parse /api/v1/namespaces[/<name>] (it takes "namespaces" for the namespace
# prefix of a namespaced path); the subclass serves those paths itself.
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?/?$")
VOLCANO_JOBS = "batch.volcano.sh/v1alpha1/jobs"
PODGROUPS = "scheduling.volcano.sh/v1beta1/podgroups"

CORE_RESOURCES = {
    "v1/pods": {"kind": "Pod", "namespaced": True, "singular": "pod", "shortnames": {"po"},
                "verbs": {"create", "get", "list", "patch", "delete"}},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True, "singular": "configmap",
                      "shortnames": {"cm"}, "verbs": {"create", "get", "list", "patch", "delete"}},
    # served by ApiServer._serve_namespaces; declared for API discovery
    "v1/namespaces": {"kind": "Namespace", "namespaced": False, "singular": "namespace",
                      "shortnames": {"ns"}, "verbs": {"create", "get", "list", "delete"}},
    "v1/serviceaccounts": {"kind": "ServiceAccount", "namespaced": True, "singular": "serviceaccount",
                           "shortnames": {"sa"}, "verbs": {"create", "get", "list", "patch", "delete"}},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "namespaced": True,
                                  "singular": "persistentvolumeclaim", "shortnames": {"pvc"},
                                  "verbs": {"create", "get", "list", "patch", "delete"}},
    "rbac.authorization.k8s.io/v1/roles": {"kind": "Role", "namespaced": True, "singular": "role",
                                           "verbs": {"create", "get", "list", "patch", "delete"}},
    "rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding", "namespaced": True,
                                                  "singular": "rolebinding",
                                                  "verbs": {"create", "get", "list", "patch", "delete"}},
}
VOLCANO_RESOURCES = {
    VOLCANO_JOBS: {"kind": "Job", "namespaced": True, "singular": "job", "shortnames": {"vcjob", "vj"},
                   "verbs": {"create", "get", "list", "patch", "delete"}},
    PODGROUPS: {"kind": "PodGroup", "namespaced": True, "singular": "podgroup", "shortnames": {"pg"},
                "verbs": {"create", "get", "list", "patch", "delete"}},
    "scheduling.volcano.sh/v1beta1/queues": {"kind": "Queue", "namespaced": False, "singular": "queue",
                                             "shortnames": {"q"},
                                             "verbs": {"create", "get", "list", "patch", "delete"}},
}


_VERBS = {kmock.action.CREATE: "create", kmock.action.LIST: "list", kmock.action.FETCH: "get",
          kmock.action.UPDATE: "patch", kmock.action.DELETE: "delete", kmock.action.WATCH: "watch"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class ApiServer(kmock.KubernetesEmulator):
    """KubernetesEmulator with the behaviour of a real API server that the client relies on."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.logs: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self.drop_after: dict[tuple[str, str], int] = {}
        self.unreachable_logs: set[tuple[str, str]] = set()  # the kubelet of these pods does not answer
        self.log_requests: list[dict[str, str]] = []
        self.log_lock = threading.Lock()
        self.closing = False
        self.namespaces: dict[str, dict[str, Any]] = {}
        # RBAC, simply: (verb, "resource[/subresource]") pairs that answer 403 Forbidden.
        self.forbidden: set[tuple[str, str]] = set()
        self._versions = itertools.count(1)
        for key, info in CORE_RESOURCES.items():
            self.resources[key] = info

    def declare_volcano(self) -> None:
        for key, info in VOLCANO_RESOURCES.items():
            self.resources[key] = info

    # --- logs, as the kubelet would write them ------------------------------------------

    def log(self, namespace: str, pod: str, *lines: str) -> None:
        with self.log_lock:
            entries = self.logs.setdefault((namespace, pod), [])
            for line in lines:
                stamp = max(time.time_ns(), entries[-1][0] + 1 if entries else 0)
                entries.append((stamp, line))

    def _lines(self, namespace: str, pod: str, start: int, since_ns: int | None) -> list[tuple[int, str]]:
        with self.log_lock:
            entries = self.logs.get((namespace, pod), [])[start:]
        return [(i, entry) for i, entry in enumerate(entries, start)  # type: ignore[misc]
                if since_ns is None or entry[0] >= since_ns]

    # --- request handling ---------------------------------------------------------------

    def _declared(self, resource: Any) -> bool:
        return any(resource == declared for declared in self.resources)

    def _pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (PODS, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key].raw
        return None

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACE_PATH.match(raw_request.path)
        if match:
            return await self._serve_namespaces(raw_request, match.group(1))
        return await super().__call__(raw_request)

    async def _serve_namespaces(self, raw: aiohttp.web.BaseRequest, name: str | None) -> aiohttp.web.StreamResponse:
        def status(code: int, reason: str, message: str) -> aiohttp.web.Response:
            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                              "code": code, "reason": reason, "message": message,
                                              "details": {"name": name, "kind": "namespaces"}}, status=code)
        if raw.method == "GET" and name is None:
            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList",
                                              "metadata": {}, "items": list(self.namespaces.values())})
        if raw.method == "GET":
            if name not in self.namespaces:
                return status(404, "NotFound", f'namespaces "{name}" not found')
            return aiohttp.web.json_response(self.namespaces[name])
        if raw.method == "POST" and name is None:
            body = await raw.json()
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now())
            body["status"] = {"phase": "Active"}
            self.namespaces[name] = body
            return aiohttp.web.json_response(body, status=201)
        if raw.method == "DELETE" and name in self.namespaces:
            return aiohttp.web.json_response(self.namespaces.pop(name))
        return status(405 if name in self.namespaces else 404, "NotFound", f"{raw.method} {raw.path}")

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.resource.plural:
            if not self._declared(request.resource):
                raise KubernetesError(404, "NotFound", "the server could not find the requested resource",
                                      {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
            self._authorize(request)
            if request.subresource == "log" and request.method == kmock.method.GET:
                return await self._serve_log(request)
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._prepare_create(request)
            elif request.name and request.action in (kmock.action.FETCH, kmock.action.UPDATE,
                                                     kmock.action.DELETE):
                self._require_object(request)
        return await super()._handle(request)

    def _authorize(self, request: kmock.Request) -> None:
        verb = _VERBS.get(request.action, str(request.method).lower())
        resource = request.resource
        target = f"{resource.plural}/{request.subresource}" if request.subresource else resource.plural
        if (verb, target) in self.forbidden:
            qualified = f"{target}.{resource.group}" if resource.group else target
            where = f' in the namespace "{request.namespace}"' if request.namespace else ""
            raise KubernetesError(
                403, "Forbidden",
                f'{qualified} is forbidden: User "tester" cannot {verb} resource "{target}" '
                f'in API group "{resource.group}"{where}',
                {"group": resource.group, "kind": resource.plural})

    def _require_object(self, request: kmock.Request) -> None:
        """404 with the API server's reason and message (kubectl relies on reason NotFound)."""
        namespaced = self.resources[request.resource].namespaced
        key = (request.resource, request.namespace if namespaced else None, request.name)
        if key not in self.objects or self.objects[key].deleted:
            resource = request.resource
            qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise KubernetesError(404, "NotFound", f'{qualified} "{request.name}" not found',
                                  {"name": request.name, "group": resource.group, "kind": resource.plural})

    def _prepare_create(self, request: kmock.Request) -> None:
        info = self.resources[request.resource]
        meta = request.data.setdefault("metadata", {})
        name = meta.get("name")
        namespace = request.namespace or meta.get("namespace")
        if info.namespaced:
            if namespace not in self.namespaces:
                raise KubernetesError(404, "NotFound", f'namespaces "{namespace}" not found',
                                      {"name": namespace, "kind": "namespaces"})
            meta["namespace"] = namespace
        key = (request.resource, namespace if info.namespaced else None, name)
        if key in self.objects and not self.objects[key].deleted:
            plural = request.resource.plural if not request.resource.group else \
                f"{request.resource.plural}.{request.resource.group}"
            raise KubernetesError(409, "AlreadyExists", f'{plural} "{name}" already exists',
                                  {"name": name, "group": request.resource.group, "kind": request.resource.plural})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._versions))

    async def _serve_version(self, request: kmock.Request) -> Any:
        result = await super()._serve_version(request)
        result["groupVersion"] = result["groupVersion"].lstrip("/")  # core: "v1", not "/v1"
        return result

    async def _serve_create(self, request: kmock.Request) -> Any:
        return kmock.Response(status=201, payload=await super()._serve_create(request))

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [item for item in result["items"]
                               if _selector_matches(selector, item.get("metadata", {}).get("labels") or {})]
        info = self.resources[request.resource]
        group, version = request.resource.group, request.resource.version
        result["apiVersion"] = f"{group}/{version}" if group else version
        result["kind"] = f"{info.kind}List"
        return result

    async def _serve_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        namespace, name = request.namespace, request.name
        params = request.params
        with self.log_lock:
            self.log_requests.append({"pod": name, **params})
        pod = self._pod(namespace, name)
        if pod is None:
            raise KubernetesError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
            raise KubernetesError(400, "BadRequest",
                                  f'container "worker" in pod "{name}" is waiting to start: ContainerCreating')
        if (namespace, name) in self.unreachable_logs:
            raise KubernetesError(500, "InternalError",
                                  f"Get \"https://10.0.0.9:10250/containerLogs/{namespace}/{name}/worker\": "
                                  "dial tcp 10.0.0.9:10250: i/o timeout")
        timestamps = params.get("timestamps") == "true"
        since = params.get("sinceSeconds")
        since_ns = time.time_ns() - int(since) * 1_000_000_000 if since else None

        def render(entries: list[tuple[int, tuple[int, str]]]) -> bytes:
            return "".join(f"{_stamp(stamp)} {text}\n" if timestamps else f"{text}\n"
                           for _, (stamp, text) in entries).encode()

        if params.get("follow") != "true":
            return aiohttp.web.Response(body=render(self._lines(namespace, name, 0, since_ns)),
                                        content_type="text/plain")
        response = aiohttp.web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request._raw_request)
        position, sent = 0, 0
        drop = self.drop_after.pop((namespace, name), None)
        while True:
            entries = self._lines(namespace, name, position, since_ns)
            if drop is not None:
                entries = entries[:max(0, drop - sent)]
            if entries:
                await response.write(render(entries))
                position = entries[-1][0] + 1
                sent += len(entries)
            if drop is not None and sent >= drop:
                break  # the connection "breaks" mid-stream
            pod = self._pod(namespace, name)
            finished = pod is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if self.closing or (finished and not self._lines(namespace, name, position, since_ns)):
                break
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response


class ServerThread:
    """Serve an ApiServer on 127.0.0.1 from a background thread's event loop."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True,
                                        name="kmock-api-server")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.server, kmock.Server(self.server) as http:
            self.url = str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the kmock API server did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.closing = True
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class Player:
    """Plays Volcano's job controller and the Ascend device plugin, through the official client."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def _json(self, response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                                   _preload_content=False)

    def job(self, name: str) -> dict[str, Any]:
        return self._json(self.custom.get_namespaced_custom_object(
            "batch.volcano.sh", "v1alpha1", self.namespace, "jobs", name, _preload_content=False))

    def create_pods(self, job_name: str) -> list[str]:
        """The job's pods, as Volcano creates them from the task template: Pending, unscheduled."""
        job = self.job(job_name)
        (task,) = job["spec"]["tasks"]
        names = []
        for index in range(task["replicas"]):
            name = f"{job_name}-{task['name']}-{index}"
            template = task["template"]
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": name, "namespace": self.namespace,
                    "labels": {**template["metadata"].get("labels", {}),
                               "volcano.sh/job-name": job_name, "volcano.sh/task-spec": task["name"],
                               "volcano.sh/task-index": str(index),
                               "volcano.sh/queue-name": job["spec"]["queue"]},
                    "annotations": {"volcano.sh/task-spec": task["name"], "volcano.sh/job-name": job_name},
                    "ownerReferences": [{"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                                         "name": job_name, "uid": job["metadata"]["uid"], "controller": True}],
                },
                "spec": {**template["spec"], "schedulerName": "volcano"},
                "status": {"phase": "Pending"},
            }
            self.core.create_namespaced_pod(self.namespace, pod, _preload_content=False)
            names.append(name)
        return names

    def patch_pod(self, name: str, patch: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod(name, self.namespace, patch, _preload_content=False,
                                       _content_type="application/merge-patch+json")

    def pod_status(self, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status}, _preload_content=False,
                                              _content_type="application/merge-patch+json")

    def schedule(self, name: str, node: str, host_ip: str) -> None:
        self.patch_pod(name, {"spec": {"nodeName": node}})
        self.pod_status(name, {"hostIP": host_ip, "conditions": [{"type": "PodScheduled", "status": "True"}]})

    def annotate(self, name: str, server_ip: str, device_ips: list[str]) -> None:
        """What the device plugin writes when it allocates the NPUs."""
        config = {"pod_name": name, "server_id": server_ip,
                  "devices": [{"device_id": str(i), "device_ip": ip} for i, ip in enumerate(device_ips)]}
        self.patch_pod(name, {"metadata": {"annotations": {
            "huawei.com/Ascend910": ",".join(f"Ascend910-{i}" for i in range(len(device_ips))),
            "ascend.kubectl.kubernetes.io/ascend-910-configuration": json.dumps(config)}}})

    def run_pod(self, name: str, restarts: int = 0) -> None:
        self.pod_status(name, {"phase": "Running", "containerStatuses": [
            {"name": "worker", "restartCount": restarts, "ready": True, "state": {"running": {}}}]})

    def finish_pod(self, name: str, exit_code: int = 0) -> None:
        self.pod_status(name, {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
            {"name": "worker", "restartCount": 0, "ready": False,
             "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}}]})

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, _preload_content=False)

    def job_state(self, name: str, phase: str, *, retry_count: int = 0, reason: str | None = None,
                  message: str | None = None, running: int = 0) -> None:
        state: dict[str, Any] = {"phase": phase}
        if reason:
            state["reason"] = reason
        if message:
            state["message"] = message
        self.custom.patch_namespaced_custom_object_status(
            "batch.volcano.sh", "v1alpha1", self.namespace, "jobs", name,
            {"status": {"state": state, "retryCount": retry_count, "running": running}},
            _preload_content=False, _content_type="application/merge-patch+json")

    def podgroup(self, job_name: str, *, unschedulable: str | None = None) -> None:
        job = self.job(job_name)
        conditions = []
        if unschedulable:
            conditions.append({"type": "Unschedulable", "status": "True", "reason": "NotEnoughResources",
                               "message": unschedulable, "transitionID": "1"})
        self.custom.create_namespaced_custom_object(
            "scheduling.volcano.sh", "v1beta1", self.namespace, "podgroups", {
                "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                "metadata": {"name": f"{job_name}-{job['metadata']['uid']}", "namespace": self.namespace,
                             "ownerReferences": [{"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                                                  "name": job_name, "uid": job["metadata"]["uid"],
                                                  "controller": True}]},
                "spec": {"minMember": job["spec"]["minAvailable"], "queue": job["spec"]["queue"]},
                "status": {"phase": "Pending", "conditions": conditions}},
            _preload_content=False)
