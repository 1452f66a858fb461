"""The emulated API server, extended for the data commands: batch/v1 Jobs, pod exec over a real
WebSocket, and a kubelet that runs the data pods' commands for real on local folders.

- `DataApiServer` (ApiServer subclass) serves `batch/v1` Jobs and answers
  `GET .../pods/<pod>/exec?command=...` with the Kubernetes channel protocol (v5, falling back to
  v4) over a WebSocket: stdin frames on channel 0, the v5 close signal (255, 0), stdout and
  stderr on channels 1 and 2, the exit status as a Status object on channel 3. The command runs
  as a local process "inside" the pod: its volume mounts are mapped to folders (`volumes`:
  claim name -> folder), `python` is this interpreter. (`forbidden` ("create", "pods/exec")
  answers the handshake with 403, as RBAC would.)
- `Kubelet` plays the Job controller and the kubelet through the official client: it creates the
  pod of each batch Job from its template, runs every data pod's command (the same mapping),
  streams its output into the pod log line by line, and sets the pod's and the Job's status.
  `script` replaces the run of a pod by given log lines and an exit code.

Not emulated: scheduling, image pulls, resource limits, the real filesystem semantics of an RWX
volume (the folders are local), and the API server's exec proxying through the kubelet.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp.web

from operator_client import names

from .emulator import ApiServer

BATCH_JOBS = {"batch/v1/jobs": {"kind": "Job", "namespaced": True, "singular": "job",
                                "verbs": {"create", "get", "list", "patch", "delete"}}}
_EXEC_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec/?$")


def pod_mounts(pod: dict[str, Any], volumes: dict[str, Path]) -> dict[str, Path]:
    """mountPath -> local folder, from the pod's volumeMounts, PVC claims and subPaths."""
    spec = pod["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", [])
              if "persistentVolumeClaim" in v}
    mapping = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        claim = claims.get(mount["name"])
        if claim is None or claim not in volumes:
            continue
        folder = volumes[claim] / mount.get("subPath", "")
        folder.mkdir(parents=True, exist_ok=True)
        mapping[mount["mountPath"]] = folder
    return mapping


def local_command(command: list[str], mounts: dict[str, Path]) -> list[str]:
    """The pod's command as this machine runs it: mount paths -> folders, python -> this python."""
    out = []
    for arg in command:
        if arg == "python":
            arg = sys.executable
        for mount, folder in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if arg == mount or arg.startswith(mount + "/"):
                arg = str(folder) + arg[len(mount):]
                break
        out.append(arg)
    return out


def pod_view(text: str, mounts: dict[str, Path]) -> str:
    """Output as the pod would print it: local folders -> mount paths."""
    for mount, folder in sorted(mounts.items(), key=lambda m: -len(str(m[1]))):
        text = text.replace(str(folder), mount)
    return text


class DataApiServer(ApiServer):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.update(BATCH_JOBS)
        self.volumes: dict[str, Path] = {}
        self.execs: list[dict[str, Any]] = []
        self.exec_protocols = ("v5.channel.k8s.io", "v4.channel.k8s.io")   # v4 only: like older clusters

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _EXEC_PATH.match(raw_request.path)
        if match:
            return await self._serve_exec(raw_request, match.group(1), match.group(2))
        return await super().__call__(raw_request)

    async def _serve_exec(self, raw: aiohttp.web.BaseRequest, namespace: str, name: str) -> aiohttp.web.StreamResponse:
        command = raw.query.getall("command", [])
        self.execs.append({"pod": name, "command": command, "query": dict(raw.query),
                           "protocol": raw.headers.get("Sec-WebSocket-Protocol")})
        if ("create", "pods/exec") in self.forbidden:
            return aiohttp.web.json_response({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "reason": "Forbidden",
                "message": f'pods "{name}" is forbidden: User "tester" cannot create resource "pods/exec" '
                           f'in API group "" in the namespace "{namespace}"'}, status=403)
        pod = self._pod(namespace, name)
        if pod is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                              "message": f'pods "{name}" not found'}, status=404)
        if (pod.get("status") or {}).get("phase") != "Running":
            return aiohttp.web.json_response({"kind": "Status", "code": 400, "reason": "BadRequest",
                                              "message": f"pod {name} is not running"}, status=400)
        mounts = pod_mounts(pod, self.volumes)
        ws = aiohttp.web.WebSocketResponse(protocols=self.exec_protocols, max_msg_size=0)
        await ws.prepare(raw)  # type: ignore[arg-type]
        process = await asyncio.create_subprocess_exec(
            *local_command(command, mounts), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        async def pump_out(stream: asyncio.StreamReader, channel: int) -> None:
            while chunk := await stream.read(1 << 16):
                await ws.send_bytes(bytes([channel]) + pod_view(chunk.decode(errors="replace"), mounts).encode())

        async def pump_in() -> None:
            assert process.stdin is not None
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                    continue
                channel, data = message.data[0], message.data[1:]
                try:
                    if channel == 0 and not process.stdin.is_closing():
                        process.stdin.write(data)
                        await process.stdin.drain()
                    elif channel == 255 and data[:1] == b"\x00":
                        process.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the command stopped reading (tar end-of-archive): the rest is dropped

        reader = asyncio.ensure_future(pump_in())
        await asyncio.gather(pump_out(process.stdout, 1), pump_out(process.stderr, 2))  # type: ignore[arg-type]
        code = await process.wait()
        status = {"metadata": {}, "status": "Success"} if code == 0 else {
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        reader.cancel()
        await ws.close()
        return ws


class Kubelet:
    """Runs the data pods (and creates the pods of batch Jobs) in a background thread."""

    def __init__(self, server: DataApiServer, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.server, self.namespace = server, namespace
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.script: dict[str, tuple[list[str], int]] = {}   # data task -> (log lines, exit code)
        self.drop_after: dict[str, int] = {}                  # data task -> break the first log stream after N lines
        self.ran: list[dict[str, Any]] = []                   # pods run: name, task, command
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="test-kubelet")

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _json(self, response: Any) -> Any:
        return json.loads(response.data)

    def _loop(self) -> None:
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
        while not self._stop.is_set():
            try:
                jobs = self._json(self.batch.list_namespaced_job(self.namespace, _preload_content=False))
                for job in jobs["items"]:
                    key = f"job/{job['metadata']['name']}"
                    if key not in self._seen:
                        self._seen.add(key)
                        self._create_job_pod(job)
                pods = self._json(self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                                _preload_content=False))
                for pod in pods["items"]:
                    key = f"pod/{pod['metadata']['name']}"
                    if key not in self._seen and names.LABEL_DATA_TASK in pod["metadata"].get("labels", {}):
                        self._seen.add(key)
                        threading.Thread(target=self._run_pod, args=(pod,), daemon=True).start()
            except Exception:  # noqa: BLE001 - the server is shutting down
                if self._stop.is_set():
                    return
            time.sleep(0.02)

    def _create_job_pod(self, job: dict[str, Any]) -> None:
        meta, template = job["metadata"], job["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{meta['name']}-x7k2p", "namespace": self.namespace,
                            "labels": {**template["metadata"].get("labels", {}), "job-name": meta["name"],
                                       "batch.kubernetes.io/job-name": meta["name"]},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True}]},
               "spec": template["spec"], "status": {"phase": "Pending"}}
        self.core.create_namespaced_pod(self.namespace, pod, _preload_content=False)

    def _status(self, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status}, _preload_content=False,
                                              _content_type="application/merge-patch+json")

    def _run_pod(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        task = pod["metadata"]["labels"][names.LABEL_DATA_TASK]
        command = pod["spec"]["containers"][0]["command"]
        self.ran.append({"name": name, "task": task, "command": command, "pod": pod})
        self._status(name, {"phase": "Running", "containerStatuses": [
            {"name": names.DATA_CONTAINER_NAME, "ready": True, "restartCount": 0, "state": {"running": {}}}]})
        if task == "upload":
            return  # it sleeps; the client execs into it and deletes it
        if task in self.drop_after:
            self.server.drop_after[(self.namespace, name)] = self.drop_after[task]
        if task in self.script:
            lines, code = self.script[task]
            for line in lines:
                self.server.log(self.namespace, name, line)
        else:
            code = self._execute(name, pod, command)
        self._status(name, {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
            {"name": names.DATA_CONTAINER_NAME, "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}]})
        owner = (pod["metadata"].get("ownerReferences") or [{}])[0]
        if owner.get("kind") == "Job":
            condition = {"type": "Complete" if code == 0 else "Failed", "status": "True"}
            self.batch.patch_namespaced_job_status(
                owner["name"], self.namespace,
                {"status": {"succeeded" if code == 0 else "failed": 1, "conditions": [condition]}},
                _preload_content=False, _content_type="application/merge-patch+json")

    def _execute(self, name: str, pod: dict[str, Any], command: list[str]) -> int:
        mounts = pod_mounts(pod, self.server.volumes)
        process = subprocess.Popen(local_command(command, mounts), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            self.server.log(self.namespace, name, pod_view(line.rstrip("\n"), mounts))
        return process.wait()
