"""`data prepare | upload | status | put-checkpoint` against the emulated API server, and locally.

The emulator (data_emulator.py) serves batch Jobs and pod exec over a real WebSocket; its
kubelet runs the data pods' commands for real (`python -m job data-install ...`) with the data
claim mapped to a folder, so these tests go from the command line through the Kubernetes API to
the files on the "volume" and back through the pod log.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from job.data import volume as job_volume
from operator_client import names
from operator_client.data import FINDING_PREFIX, format_finding, parse_findings
from operator_client.data_transfer import ProcessSession, TransferProgress, send_tar
from operator_client.data_render import (DataTarget, install_command, render_install_job, render_pod,
                                         sleep_command, source_path_in_pod, status_command)
from operator_client.errors import ClientError
from operator_client.render import manifests_dir

from ..job.data.sop_archive import build_sop, sha256, zip_sop
from .conftest import NAMESPACE, PLAYER_AGENT, write_kubeconfig
from .data_emulator import DataApiServer, Kubelet
from .emulator import Player, ServerThread
from .validation import validate

EXPECT = ("--expect-train", "24", "--expect-test", "16")
RECORD = names.data_record_configmap(names.DEFAULT_DATA_PVC)


@pytest.fixture
def sop(tmp_path):
    return build_sop(tmp_path / "src")


@pytest.fixture
def archive(sop, tmp_path):
    return zip_sop(sop, tmp_path / "Stanford_Online_Products.zip")


@dataclasses.dataclass
class DataCluster:
    server: DataApiServer
    kubeconfig: Path
    player: Player
    kubelet: Kubelet
    volume: Path                      # the folder behind the claim sop-data

    def args(self, *extra: str) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, "--poll-interval", "0.02", *extra]

    def record(self) -> list[dict] | None:
        try:
            raw = self.player.core.read_namespaced_config_map(RECORD, NAMESPACE, _preload_content=False)
        except Exception:  # noqa: BLE001 - 404
            return None
        return json.loads(json.loads(raw.data)["data"][names.DATA_RECORD_KEY])

    def objects(self, plural: str) -> list[dict]:
        return [obj.raw for key, obj in self.server.objects.items()
                if key[0].plural == plural and not obj.deleted]


@pytest.fixture
def data_cluster(tmp_path):
    from kubernetes import config

    server = DataApiServer()
    server.declare_volcano()
    volume = tmp_path / "volume"
    volume.mkdir()
    server.volumes[names.DEFAULT_DATA_PVC] = volume
    with ServerThread(server) as thread:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", thread.url)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        api.user_agent = PLAYER_AGENT
        player = Player(api, NAMESPACE)
        player.create_namespace(NAMESPACE)
        with Kubelet(server, api, NAMESPACE) as kubelet:
            yield DataCluster(server, kubeconfig, player, kubelet, volume)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def findings_of(stdout: str) -> list[str]:
    return stdout.strip().splitlines()


@pytest.mark.parametrize("command, expected", [
    ("prepare", ["--from-url URL", "--from-pvc-path PATH", "--source-pvc", "--sha256", "--allow-partial",
                 "--force", "--local DIR", "--data-pvc", "--data-subpath", "--image", "--kubeconfig", "pre-signed"]),
    ("upload", ["PATH", "--no-prepare", "progress bar", "--local DIR"]),
    ("status", ["--sample N", "-o", "one line per finding"]),
    ("put-checkpoint", ["FILE", "/data/pretrained/resnet50.ckpt", "SHA-256"]),
])
def test_help(run, command, expected):
    assert "data" in run("--help").out
    result = run("data", command, "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for item in expected:
        assert item in text, f"data {command} --help does not mention {item}"


def test_data_without_a_command_is_one_line(run):
    result = run("data")
    assert result.code == 2 and result.err.count("\n") == 1 and result.err.startswith("error: ")


# --- rendering ------------------------------------------------------------------------------

TARGETS = {
    "defaults": (DataTarget(), None),
    "subpath-image": (DataTarget(namespace="ml", data_pvc="team.sop", data_subpath="datasets",
                                 image="registry.example.com:5000/ml/sop-metric-job:0.1.0"), None),
    "source-pvc": (DataTarget(namespace="ml"), "node-datasets"),
}


@pytest.mark.parametrize("target, source_pvc", TARGETS.values(), ids=TARGETS.keys())
def test_rendered_data_job_and_pods_validate_and_mount_the_volume(target, source_pvc):
    command = install_command("https://example.org/SOP.zip", sha256="a" * 64)
    job = render_install_job(target, "sop-data-prepare-1", command, source_pvc=source_pvc)
    status_pod = render_pod(target, "sop-data-status-1", "status", status_command(), source_pvc=source_pvc)
    upload_pod = render_pod(target, "sop-data-upload-1", "upload", sleep_command())
    for manifest in (job, status_pod, upload_pod):
        validate(manifest)                     # kubernetes-validate --strict, 1.25 and 1.37
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for pod_spec, labels in ((job["spec"]["template"]["spec"], job["spec"]["template"]["metadata"]["labels"]),
                             (status_pod["spec"], status_pod["metadata"]["labels"])):
        assert labels[names.LABEL_DATA_RUN] in ("sop-data-prepare-1", "sop-data-status-1")
        (container,) = pod_spec["containers"]
        assert container["image"] == target.image
        assert not any("huawei.com" in key for key in container["resources"]["limits"])   # CPU only
        assert pod_spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert volumes["sop-data"]["persistentVolumeClaim"]["claimName"] == target.data_pvc
        assert mounts["sop-data"]["mountPath"] == "/data"
        assert mounts["sop-data"].get("subPath") == (target.data_subpath or None)
        if source_pvc:
            assert volumes["source"]["persistentVolumeClaim"] == {"claimName": source_pvc, "readOnly": True}
            assert mounts["source"] == {"name": "source", "mountPath": "/source", "readOnly": True}
        else:
            assert set(volumes) == {"sop-data"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "job", "data-install", "--source", "https://example.org/SOP.zip", "--dest", "/data/sop",
        "--sha256", "a" * 64, "--pretrained", "/data/pretrained/resnet50.ckpt"]
    assert status_pod["spec"]["containers"][0]["command"] == [
        "python", "-m", "job", "data-status", "--root", "/data/sop", "--pretrained", "/data/pretrained/resnet50.ckpt"]


def test_the_commands_are_the_job_sides():
    """Every flag the client renders is one `python -m job` accepts (parsed by the job's own parser)."""
    from job.cli import build_parser

    parser = build_parser()
    commands = [install_command("/data/incoming/x.zip", sha256="b" * 64, allow_partial=True, force=True,
                                consume_source=True, expect_train=3, expect_test=4),
                status_command(sample=7),
                ["python", "-m", "job", "data-receive", "--dest", "/data/incoming", "--sha256", "x=" + "c" * 64,
                 "--replace"]]
    from operator_client.data_render import receive_command
    assert commands[2] == receive_command("/data/incoming", {"x": "c" * 64}, replace=True)
    for command in commands:
        assert command[:3] == ["python", "-m", "job"]
        args = parser.parse_args(command[3:])
        assert args.command == command[3]
    assert job_volume.FINDING_PREFIX == FINDING_PREFIX


@pytest.mark.parametrize("path, source_pvc, expected", [
    ("incoming/SOP.zip", None, "/data/incoming/SOP.zip"),
    ("/data/incoming/SOP.zip", None, "/data/incoming/SOP.zip"),
    ("sop", None, "/data/sop"),
    ("datasets/Stanford_Online_Products", "node-data", "/source/datasets/Stanford_Online_Products"),
    ("/source/x.zip", "node-data", "/source/x.zip"),
])
def test_source_paths_in_the_pod(path, source_pvc, expected):
    assert source_path_in_pod(path, source_pvc=source_pvc) == expected


@pytest.mark.parametrize("path, source_pvc, message", [
    ("/home/me/SOP.zip", None, "give a path on the data volume, relative to its root"),
    ("/data/../etc/passwd", None, "must not contain '..'"),
    ("/data/x.zip", "node-data", "give a path on claim node-data"),
    ("", None, "needs a path"),
])
def test_bad_source_paths(path, source_pvc, message):
    with pytest.raises(ClientError, match=message):
        source_path_in_pod(path, source_pvc=source_pvc)


# --- prepare on the cluster, for real through the emulated kubelet -------------------------

def test_prepare_from_a_url_runs_the_install_job_and_reports(run, data_cluster, archive, web):
    www, base = web
    (www / archive.name).write_bytes(archive.read_bytes())
    url = f"{base}/{archive.name}"
    result = run("data", "prepare", "--from-url", url, "--sha256", sha256(archive), *EXPECT,
                 *data_cluster.args())
    assert result.code == 0, result.err
    (job,) = data_cluster.objects("jobs")
    validate(job)
    name = job["metadata"]["name"]
    assert name.startswith("sop-data-prepare-")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "job", "data-install", "--source", url, "--dest", "/data/sop", "--sha256", sha256(archive),
        "--expect-train", "24", "--expect-test", "16", "--pretrained", "/data/pretrained/resnet50.ckpt"]
    # the pod's progress reaches the user, the findings are printed one per line
    assert f"started Job {name} on volume sop-data in namespace ml" in result.err
    assert f"downloading {url} (" in result.err and "list files: train.txt 24" in result.err
    lines = findings_of(result.out)
    assert lines[0].startswith("install: installed SOP at /data/sop (train 24, test 16 images) from "
                               f"{url} in ")
    assert lines[1].startswith(f"dataset: prepared at /data/sop (sha256 {sha256(archive)[:12]}..., installed ")
    assert lines[2:] == [
        "split train: 24 images of 12 classes (Ebay_train.txt), as expected",
        "images train: 24 of 24 checked, none missing",
        "split test: 16 images of 8 classes (Ebay_test.txt), as expected",
        "images test: 16 of 16 checked, none missing",
        "lists: train.txt 24, test.txt 16, train_half.txt 24, test_half.txt 16, train_tiny.txt 24, test_tiny.txt 16",
        "checkpoint: /data/pretrained/resnet50.ckpt MISSING - place the ImageNet ResNet50 checkpoint with "
        "`python -m operator_client data put-checkpoint FILE`"]
    # on the volume: the dataset where the rank pods read it
    assert (data_cluster.volume / "sop" / "train.txt").read_text().splitlines()[0].endswith(" 1")
    assert (data_cluster.volume / "sop" / job_volume.MARKER).is_file()
    record = data_cluster.record()
    assert [f["finding"] for f in record][:2] == ["install", "dataset"]

    again = run("data", "prepare", "--from-url", url, *EXPECT, *data_cluster.args())
    assert again.code == 0, again.err
    assert findings_of(again.out)[0].startswith("install: /data/sop was already prepared (installed ")
    assert "nothing to do" in findings_of(again.out)[0]


def test_prepare_refuses_a_partial_archive_in_one_line(run, data_cluster, sop):
    incoming = data_cluster.volume / "incoming"
    incoming.mkdir()
    zip_sop(sop, incoming / "partial.zip", skip=(sop.train[0],))
    result = run("data", "prepare", "--from-pvc-path", "incoming/partial.zip", *EXPECT, *data_cluster.args())
    assert result.code == 2
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: Job sop-data-prepare-")
    assert last.endswith(f"failed: the dataset is incomplete: 1 of the 24 train images are missing ({sop.train[0]}); "
                         "pass --allow-partial to install it anyway")
    assert not (data_cluster.volume / "sop").exists()
    assert not [p for p in data_cluster.volume.iterdir() if p.name.startswith(".sop-install-")]
    ok = run("data", "prepare", "--from-pvc-path", "/data/incoming/partial.zip", "--allow-partial", *EXPECT,
             *data_cluster.args())
    assert ok.code == 0, ok.err
    assert "PARTIAL (installed with --allow-partial)" in ok.out


def test_prepare_from_another_claim_mounts_it_read_only(run, data_cluster, sop):
    data_cluster.server.volumes["node-datasets"] = sop.folder.parent
    result = run("data", "prepare", "--from-pvc-path", "Stanford_Online_Products", "--source-pvc", "node-datasets",
                 *EXPECT, *data_cluster.args())
    assert result.code == 0, result.err
    (ran,) = data_cluster.kubelet.ran
    assert ran["command"][4:6] == ["--source", "/source/Stanford_Online_Products"]
    assert (data_cluster.volume / "sop" / sop.test[0]).is_file() and sop.folder.is_dir()   # copied, not moved


def test_a_subpath_of_the_volume_has_its_own_dataset_and_record(run, data_cluster, archive):
    (data_cluster.volume / "team-a").mkdir()
    (data_cluster.volume / "team-a" / "SOP.zip").write_bytes(archive.read_bytes())
    result = run("data", "prepare", "--from-pvc-path", "SOP.zip", "--data-subpath", "team-a", *EXPECT,
                 *data_cluster.args())
    assert result.code == 0, result.err
    assert "on volume sop-data (subPath team-a) in namespace ml" in result.err
    assert (data_cluster.volume / "team-a" / "sop" / "train.txt").is_file()
    assert not (data_cluster.volume / "sop").exists()
    names_ = {c["metadata"]["name"] for c in data_cluster.objects("configmaps")}
    assert names.data_record_configmap("sop-data", "team-a") in names_ and RECORD not in names_


@pytest.mark.parametrize("argv, message", [
    (["--from-url", "s3://bucket/SOP.zip"], "s3:// URLs are not fetched directly; make a pre-signed HTTPS URL"),
    (["--from-url", "ftp://host/SOP.zip"], "must be an http:// or https:// URL"),
    (["--from-pvc-path", "/home/me/SOP.zip"], "give a path on the data volume"),
    (["--from-url", "https://x/SOP.zip", "--expect-train", "0"], "--expect-train must be at least 1, got 0"),
    (["--from-url", "https://x/SOP.zip", "--data-pvc", "Bad_PVC"], "--data-pvc 'Bad_PVC' is not a valid Kubernetes name"),
], ids=["s3", "ftp", "outside-volume", "expect-0", "bad-pvc"])
def test_prepare_user_errors_are_one_line(run, data_cluster, argv, message):
    result = run("data", "prepare", *argv, *data_cluster.args())
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert result.err.startswith("error: ") and message in result.err
    assert data_cluster.objects("jobs") == []


def test_a_pod_that_cannot_start_times_out_with_the_reason(run, data_cluster):
    data_cluster.kubelet._stop.set()           # no kubelet: the pod stays Pending ...
    future_pod = "sop-data-status-"

    def image_pull_error():
        pods = [p for p in data_cluster.objects("pods") if p["metadata"]["name"].startswith(future_pod)]
        for pod in pods:
            data_cluster.player.pod_status(pod["metadata"]["name"], {"phase": "Pending", "containerStatuses": [
                {"name": "data", "ready": False, "restartCount": 0, "state": {"waiting": {
                    "reason": "ImagePullBackOff", "message": 'Back-off pulling image "sop-metric-job:0.1.0"'}}}]})
        return pods

    threading.Timer(0.3, image_pull_error).start()
    result = run("data", "status", "--start-timeout", "1", *data_cluster.args())
    assert result.code == 124
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: timed out after 1s - waiting for the pod sop-data-status-")
    assert 'ImagePullBackOff: Back-off pulling image "sop-metric-job:0.1.0"; it is still there: kubectl -n ml ' \
           'describe pod sop-data-status-' in last
    assert data_cluster.objects("pods") == []   # the status pod is removed even so


# --- status: parsed from a scripted pod log ------------------------------------------------

def test_status_is_parsed_from_the_pod_log(run, data_cluster, archive, tmp_path):
    # the findings lines as the job side prints them, on a real small dataset ...
    job_volume.install(str(archive), tmp_path / "vol" / "sop", expect={"train": 24, "test": 16},
                       report=lambda _: None)
    (tmp_path / "vol" / "sop" / "test_tiny.txt").unlink()
    printed = subprocess.run([sys.executable, "-m", "job", "data-status", "--root", str(tmp_path / "vol" / "sop"),
                              "--pretrained", str(tmp_path / "vol" / "pretrained" / "resnet50.ckpt")],
                             capture_output=True, text=True, check=True).stdout
    printed = printed.replace(str(tmp_path / "vol"), "/data")
    # ... scripted as the status pod's log, among other output
    log = ["Python 3.11 warming up", *printed.splitlines(), "sop-data {not json", "bye"]
    data_cluster.kubelet.script["status"] = (log, 0)
    result = run("data", "status", *data_cluster.args())
    assert result.code == 0, result.err
    lines = findings_of(result.out)
    assert lines[0].startswith("dataset: prepared at /data/sop (sha256 ")
    assert lines[1:] == [
        "split train: 24 images of 12 classes (Ebay_train.txt), as expected",
        "images train: 24 of 24 checked, none missing",
        "split test: 16 images of 8 classes (Ebay_test.txt), as expected",
        "images test: 16 of 16 checked, none missing",
        "lists: train.txt 24, test.txt 16, train_half.txt 24, test_half.txt 16, train_tiny.txt 24; MISSING "
        "test_tiny.txt (write them with `python -m job prepare-sop --root /data/sop` in a pod, or "
        "`data prepare --force`)",
        "checkpoint: /data/pretrained/resnet50.ckpt MISSING - place the ImageNet ResNet50 checkpoint with "
        "`python -m operator_client data put-checkpoint FILE`"]
    assert "Python 3.11 warming up" in result.err and "bye" in result.err
    (ran,) = data_cluster.kubelet.ran
    assert ran["task"] == "status"
    validate(ran["pod"])
    assert data_cluster.objects("pods") == []           # the short-lived pod is gone
    assert data_cluster.record() == parse_findings(log)  # and what it saw is recorded
    as_json = run("data", "status", "-o", "json", *data_cluster.args())
    assert json.loads(as_json.out) == parse_findings(log)


def test_status_of_an_empty_volume_and_a_failing_pod(run, data_cluster):
    result = run("data", "status", *data_cluster.args())       # for real: nothing there yet
    assert result.code == 0, result.err
    assert findings_of(result.out) == [
        "dataset: nothing at /data/sop yet - put SOP there with `python -m operator_client data prepare "
        "--from-url URL` or `python -m operator_client data upload PATH`",
        "checkpoint: /data/pretrained/resnet50.ckpt MISSING - place the ImageNet ResNet50 checkpoint with "
        "`python -m operator_client data put-checkpoint FILE`"]
    data_cluster.kubelet.script["status"] = (["error: /data/sop: Permission denied"], 2)
    failed = run("data", "status", *data_cluster.args())
    assert failed.code == 2
    assert failed.err.strip().splitlines()[-1].startswith("error: pod sop-data-status-")
    assert failed.err.strip().endswith("failed: /data/sop: Permission denied")


def test_a_broken_log_stream_loses_and_repeats_nothing(run, data_cluster):
    progress = [f"checking train images: {i} images" for i in range(30)]
    finding = FINDING_PREFIX + json.dumps({"finding": "dataset", "root": "/data/sop", "state": "absent"})
    data_cluster.kubelet.script["status"] = ([*progress, finding], 0)
    data_cluster.kubelet.drop_after["status"] = 7
    result = run("data", "status", *data_cluster.args())
    assert result.code == 0, result.err
    assert [line for line in result.err.splitlines() if line.startswith("checking")] == progress
    assert result.out.startswith("dataset: nothing at /data/sop yet")


# --- upload and put-checkpoint: tar over pod exec (a real WebSocket) ------------------------

def test_upload_streams_the_archive_through_exec_then_installs(run, data_cluster, archive):
    result = run("data", "upload", str(archive), *EXPECT, *data_cluster.args())
    assert result.code == 0, result.err
    execs = data_cluster.server.execs
    assert [e["command"][:4] for e in execs] == [["python", "-m", "job", "data-status"],
                                                 ["python", "-m", "job", "data-receive"]]
    assert execs[1]["command"] == ["python", "-m", "job", "data-receive", "--dest", "/data/incoming", "--replace"]
    assert execs[1]["query"]["container"] == "data" and execs[1]["query"]["stdin"] == "true"
    upload_pod = next(r["pod"] for r in data_cluster.kubelet.ran if r["task"] == "upload")
    validate(upload_pod)
    assert "upload: 28.0 KiB of 28.0 KiB (100%)" in result.err          # the progress bar's last state
    lines = findings_of(result.out)
    assert lines[0] == "received: 1 file(s), 28.0 KiB into /data/incoming"
    assert lines[1].startswith("install: installed SOP at /data/sop (train 24, test 16 images) from "
                               "/data/incoming/Stanford_Online_Products.zip")
    install = next(r for r in data_cluster.kubelet.ran if r["task"] == "prepare")
    assert "--consume-source" in install["command"]
    assert (data_cluster.volume / "sop" / "test.txt").is_file()
    assert not (data_cluster.volume / "incoming" / archive.name).exists()   # the staged copy is consumed
    assert [p["metadata"]["name"] for p in data_cluster.objects("pods")
            if p["metadata"]["labels"][names.LABEL_DATA_TASK] == "upload"] == []

    again = run("data", "upload", str(archive), *EXPECT, *data_cluster.args())
    assert again.code == 0, again.err
    assert "is already prepared: nothing uploaded; --force uploads and installs again" in again.err
    assert len(data_cluster.server.execs) == 3          # one more status, no data-receive


def test_upload_of_an_unpacked_folder(run, data_cluster, sop):
    result = run("data", "upload", str(sop.folder), *EXPECT, *data_cluster.args())
    assert result.code == 0, result.err
    assert findings_of(result.out)[0].startswith("received: 43 file(s)")
    assert (data_cluster.volume / "sop" / sop.train[5]).read_bytes() == (sop.folder / sop.train[5]).read_bytes()
    assert not (data_cluster.volume / "incoming" / "Stanford_Online_Products").exists()   # moved into place


def test_put_checkpoint_over_the_v4_exec_protocol(run, data_cluster, tmp_path):
    """Clusters before Kubernetes 1.30 speak v4, which cannot close stdin: data-receive stops at
    the tar end-of-archive marker, so the command still ends and reports."""
    data_cluster.server.exec_protocols = ("v4.channel.k8s.io",)
    ckpt = tmp_path / "r.ckpt"
    ckpt.write_bytes(os.urandom(3 * 2**20 + 17))     # more than one 1 MiB frame
    result = run("data", "put-checkpoint", str(ckpt), *data_cluster.args())
    assert result.code == 0, result.err
    assert (data_cluster.volume / "pretrained" / "resnet50.ckpt").read_bytes() == ckpt.read_bytes()


def test_put_checkpoint_then_submit(run, data_cluster, tmp_path):
    refused = run("submit", "--loss", "triplet", "--name", "exp", "--no-fill", *data_cluster.args())
    assert refused.code == 2
    assert refused.err == (
        "error: the stages start with pretraining from ImageNet weights, but the default checkpoint "
        "/data/pretrained/resnet50.ckpt is not on volume sop-data in namespace ml (no data command has looked "
        "at it yet): place it with `python -m operator_client data put-checkpoint FILE -n ml` (if it is "
        "already there, `python -m operator_client data status -n ml` records it), or pass --pretrained-ckpt "
        "PATH\n")
    assert data_cluster.objects("jobs") == []
    ckpt = tmp_path / "resnet50_imagenet.ckpt"
    ckpt.write_bytes(os.urandom(300_000))
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    placed = run("data", "put-checkpoint", str(ckpt), *data_cluster.args())
    assert placed.code == 0, placed.err
    assert placed.out == f"checkpoint: /data/pretrained/resnet50.ckpt present, 293.0 KiB, sha256 {digest[:12]}...\n"
    assert (data_cluster.volume / "pretrained" / "resnet50.ckpt").read_bytes() == ckpt.read_bytes()
    assert (data_cluster.volume / "pretrained" / "resnet50.ckpt.sha256").read_text().split()[0] == digest
    (receive,) = data_cluster.server.execs
    assert receive["command"] == ["python", "-m", "job", "data-receive", "--dest", "/data/pretrained",
                                  "--sha256", f"resnet50.ckpt={digest}"]
    submitted = run("submit", "--loss", "triplet", "--name", "exp", "--no-fill", *data_cluster.args())
    assert submitted.code == 0, submitted.err
    (vcjob,) = [j for j in data_cluster.objects("jobs") if j["apiVersion"].startswith("batch.volcano.sh")]
    command = vcjob["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--pretrained-ckpt") + 1] == "/data/pretrained/resnet50.ckpt"


@pytest.mark.parametrize("flags", [["--pretrained-ckpt", "/runs/old/pretrain-e030.ckpt"],
                                   ["--pretrained-ckpt", "none"], ["--stages", "finetune,eval"],
                                   ["--device", "cpu"]],
                         ids=["explicit", "none", "no-pretrain", "cpu"])
def test_submit_needs_no_default_checkpoint_otherwise(run, data_cluster, flags):
    result = run("submit", "--loss", "triplet", "--name", "x", "--no-fill", *flags, *data_cluster.args())
    assert result.code == 0, result.err


@pytest.mark.parametrize("size", [10, 5 * 2**20], ids=["small", "several-frames"])
def test_a_failing_receiver_is_reported_in_one_line(run, data_cluster, tmp_path, size):
    (data_cluster.volume / "pretrained").write_text("a file where the folder should be")
    ckpt = tmp_path / "r.ckpt"
    ckpt.write_bytes(b"z" * size)
    result = run("data", "put-checkpoint", str(ckpt), *data_cluster.args())
    assert result.code == 2
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: receiving the upload in pod sop-data-upload-")
    assert last.endswith("failed: /data/pretrained: File exists")
    assert data_cluster.objects("pods") == []


def test_exec_forbidden_is_one_line(run, data_cluster, tmp_path):
    data_cluster.server.forbidden.add(("create", "pods/exec"))
    ckpt = tmp_path / "r.ckpt"
    ckpt.write_bytes(b"x" * 10)
    result = run("data", "put-checkpoint", str(ckpt), *data_cluster.args())
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == (
        "error: forbidden: you may not create pods/exec in namespace 'ml'; ask a cluster admin to grant "
        "'create' on 'pods/exec' (the Role sop-submitter from manifests/cluster has it)")
    assert data_cluster.objects("pods") == []


def test_the_submitter_role_allows_every_call_the_data_commands_make(run, data_cluster, archive, tmp_path):
    """Record the API requests of a whole data session and check each against Role sop-submitter."""
    ckpt = tmp_path / "r.ckpt"
    ckpt.write_bytes(b"r" * 100)
    incoming = data_cluster.volume / "incoming"
    incoming.mkdir()
    (incoming / "SOP.zip").write_bytes(archive.read_bytes())
    for argv in (["data", "prepare", "--from-pvc-path", "incoming/SOP.zip", *EXPECT],
                 ["data", "upload", str(archive), "--force", *EXPECT],
                 ["data", "status"], ["data", "put-checkpoint", str(ckpt)],
                 ["submit", "--loss", "triplet", "--name", "r", "--no-fill"]):
        result = run(*argv, *data_cluster.args())
        assert result.code == 0, (argv, result.err)
    verbs = {"CREATE": "create", "FETCH": "get", "LIST": "list", "UPDATE": "patch", "DELETE": "delete"}
    used = {(verbs[r.action.value], r.resource.group,
             r.resource.plural + (f"/{r.subresource}" if r.subresource else ""))
            for r in data_cluster.server if r.resource is not None and r.resource.plural
            and r.headers.get("User-Agent") != PLAYER_AGENT}
    used |= {("create", "", "pods/exec") for _ in data_cluster.server.execs[:1]}
    assert {("create", "batch", "jobs"), ("create", "", "pods"), ("delete", "", "pods"),
            ("get", "", "pods/log"), ("create", "", "pods/exec"), ("patch", "", "configmaps")} <= used
    role = next(doc for doc in yaml.safe_load_all((manifests_dir() / "cluster" / "rbac.yaml").read_text())
                if doc["kind"] == "Role" and doc["metadata"]["name"] == names.SUBMITTER_ROLE)
    missing = [u for u in used if not any(u[0] in rule["verbs"] and u[1] in rule["apiGroups"]
                                          and u[2] in rule["resources"] for rule in role["rules"])]
    assert missing == []


# --- the tar stream and its progress, in isolation ------------------------------------------

def test_send_tar_into_data_receive_rebuilds_the_folder_and_reports_progress(sop, tmp_path):
    dest = tmp_path / "dest"
    session = ProcessSession([sys.executable, "-m", "job", "data-receive", "--dest", str(dest)])
    lines: list[str] = []
    sent = send_tar(sop.folder, "SOP", session, on_progress=lines.append, progress_interval=0)
    code, out, err = session.finish(60)
    assert code == 0, err
    files = sorted(p.relative_to(sop.folder) for p in sop.folder.rglob("*") if p.is_file())
    assert sorted(p.relative_to(dest / "SOP") for p in (dest / "SOP").rglob("*") if p.is_file()) == files
    assert all((dest / "SOP" / f).read_bytes() == (sop.folder / f).read_bytes() for f in files)
    assert sent == sum((sop.folder / f).stat().st_size for f in files)
    percents = [int(line.split("(")[1].split("%")[0]) for line in lines]
    assert percents == sorted(percents) and percents[-1] == 100 and len(lines) == len(files)
    (finding,) = parse_findings(out.splitlines())
    assert finding["files"] == len(files) and finding["bytes"] == sent


def test_links_are_not_uploaded(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "link").symlink_to("/etc/passwd")
    session = ProcessSession([sys.executable, "-c", "import sys; sys.stdin.read()"])
    with pytest.raises(ClientError, match="is a link or special file"):
        send_tar(folder, "data", session)
    session.finish(10)


def test_transfer_progress_line():
    now = [0.0]
    lines: list[str] = []
    progress = TransferProgress("upload", 3 * 2**30, lines.append, interval=1, clock=lambda: now[0])
    now[0] = 10.0
    progress.add(2**30)
    assert lines == ["upload: 1.0 GiB of 3.0 GiB (33%), 102.4 MiB/s, ETA 0:00:20"]


def test_every_finding_kind_has_a_line():
    kinds = {"dataset", "split", "images", "lists", "leftover", "checkpoint", "install", "received", "problem"}
    for kind in kinds:
        assert format_finding({"finding": kind}).startswith(kind)
    assert format_finding({"finding": "new", "x": 1}) == 'new: {"x": 1}'


# --- --local: the same commands on a folder -------------------------------------------------

def test_local_prepare_status_and_put_checkpoint(run, archive, tmp_path):
    root = tmp_path / "local-volume"
    prepared = run("data", "prepare", "--local", str(root), "--from-pvc-path", str(archive), *EXPECT)
    assert prepared.code == 0, prepared.err
    assert findings_of(prepared.out)[0].startswith(f"install: installed SOP at {root / 'sop'} (train 24, test 16")
    assert (root / "sop" / "train_tiny.txt").is_file()
    again = run("data", "upload", "--local", str(root), str(archive), *EXPECT)
    assert again.code == 0 and "was already prepared" in again.out
    ckpt = tmp_path / "r.ckpt"
    ckpt.write_bytes(b"w" * 5000)
    placed = run("data", "put-checkpoint", "--local", str(root), str(ckpt))
    assert placed.code == 0, placed.err
    assert (root / "pretrained" / "resnet50.ckpt").read_bytes() == ckpt.read_bytes()
    status = run("data", "status", "--local", str(root), "-o", "json")
    findings = json.loads(status.out)
    assert findings[0]["state"] == "prepared"
    assert findings[-1] == {"finding": "checkpoint", "path": str(root / "pretrained" / "resnet50.ckpt"),
                            "present": True, "bytes": 5000, "sha256": hashlib.sha256(b"w" * 5000).hexdigest()}
    refused = run("data", "prepare", "--local", str(tmp_path / "other"), "--from-pvc-path", str(archive))
    assert refused.code == 2 and refused.err.strip().splitlines()[-1].startswith(
        "error: the dataset is incomplete: Ebay_train.txt lists 24 images, expected 59,551")
