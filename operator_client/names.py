"""Every Kubernetes name, label, annotation, path and env var the client uses: the single source.

Three parties must agree on these strings: Volcano (job, task and pod naming, its labels and
plugins), the Ascend device plugin / hccl-controller convention (the rank-table ConfigMap, its
mount and the pod annotations), and the job side (`python -m job launch`, which reads the mounted
rank table and the env vars below). Nothing else in the package spells them out.
"""
from __future__ import annotations

import datetime
import secrets

# --- Volcano -------------------------------------------------------------------------------
VOLCANO_GROUP = "batch.volcano.sh"
VOLCANO_VERSION = "v1alpha1"
VOLCANO_API_VERSION = f"{VOLCANO_GROUP}/{VOLCANO_VERSION}"
VOLCANO_JOB_KIND = "Job"
VOLCANO_JOB_PLURAL = "jobs"
VOLCANO_SCHEDULER = "volcano"

PODGROUP_GROUP = "scheduling.volcano.sh"
PODGROUP_VERSION = "v1beta1"
PODGROUP_PLURAL = "podgroups"
QUEUE_API_VERSION = f"{PODGROUP_GROUP}/{PODGROUP_VERSION}"

# Labels Volcano's job controller puts on every pod it creates.
LABEL_VOLCANO_JOB_NAME = "volcano.sh/job-name"
LABEL_VOLCANO_TASK_SPEC = "volcano.sh/task-spec"
LABEL_VOLCANO_TASK_INDEX = "volcano.sh/task-index"
LABEL_VOLCANO_QUEUE_NAME = "volcano.sh/queue-name"

# Env vars injected by Volcano's `env` plugin (the pod's index within its task).
ENV_VC_TASK_INDEX = "VC_TASK_INDEX"

# The one task of our jobs: one pod per server.
TASK_NAME = "worker"
JOB_PHASES_TERMINAL = ("Completed", "Failed", "Aborted", "Terminated")
JOB_PHASE_SUCCEEDED = "Completed"

# --- Ascend (MindX DL device plugin, hccl-controller / Ascend Operator convention) ---------
ASCEND_RESOURCE = "huawei.com/Ascend910"
ANNOTATION_ASCEND_DEVICES = "huawei.com/Ascend910"
ANNOTATION_ASCEND_CONFIGURATION = "ascend.kubectl.kubernetes.io/ascend-910-configuration"
LABEL_RING_CONTROLLER = "ring-controller.atlas"
RING_CONTROLLER_VALUE = "ascend-910"
RANK_TABLE_VOLUME = "ascend-910-config"
RANK_TABLE_DIR = "/user/serverid/devindex/config"
RANK_TABLE_KEY = "hccl.json"
RANK_TABLE_FILE = f"{RANK_TABLE_DIR}/{RANK_TABLE_KEY}"
VALID_DEVICES_PER_SERVER = (1, 2, 4, 8)
DEVICES_PER_SERVER_MAX = 8

# --- Our own labels and annotations -------------------------------------------------------
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "sop-metric-job"
MANAGED_BY = "operator_client"
LABEL_LOSS = "sop-metric-job/loss"
ANNOTATION_STAGES = "sop-metric-job/stages"
ANNOTATION_LAUNCH = "sop-metric-job/launch"
# On the rank-table ConfigMap: the uids of the pods the table was built from (for --watch).
ANNOTATION_RANK_TABLE_PODS = "sop-metric-job/rank-table-pods"

# --- Pod layout: volumes, mounts, container -----------------------------------------------
CONTAINER_NAME = "worker"
DATA_VOLUME = "sop-data"
DATA_MOUNT = "/data"
SOP_SUBDIR = "sop"
DATA_DIR = f"{DATA_MOUNT}/{SOP_SUBDIR}"  # the SOP dataset inside the data volume (after subPath)
RUNS_VOLUME = "runs"
RUNS_MOUNT = "/runs"
SHM_VOLUME = "dshm"

# Env vars of the rank pod (the contract with `python -m job launch`).
ENV_POD_IP = "POD_IP"
ENV_HOST_IP = "HOST_IP"
ENV_ASCEND_VISIBLE_DEVICES = "ASCEND_VISIBLE_DEVICES"
ENV_MS_SCHED_HOST = "MS_SCHED_HOST"
ENV_MS_SCHED_PORT = "MS_SCHED_PORT"
ENV_MS_WORKER_NUM = "MS_WORKER_NUM"
ENV_MS_NODE_RANK = "MS_NODE_RANK"
DEFAULT_SCHEDULER_PORT = 8118

# --- Cluster set-up defaults (manifests/cluster) -------------------------------------------
DEFAULT_NAMESPACE = "metric-learn"
DEFAULT_QUEUE = "metric-learn"
DEFAULT_DATA_PVC = "sop-data"
DEFAULT_RUNS_PVC = "sop-runs"
DEFAULT_SERVICE_ACCOUNT = "sop-job"
# What docker/Dockerfile and docker/Dockerfile.cpu build (see docker/README.md).
DEFAULT_IMAGE = "sop-metric-job:0.1.0"
DEFAULT_CPU_IMAGE = "sop-metric-job:0.1.0-cpu"
SUBMITTER_ROLE = "sop-submitter"

# --- The data volume: where `data prepare|upload|put-checkpoint` put things (operator_client.data)
# Relative to the data volume's root (after --data-subpath), which pods mount at DATA_MOUNT and
# `--local DIR` replaces by DIR.
PRETRAINED_RELPATH = "pretrained/resnet50.ckpt"
DEFAULT_PRETRAINED_CKPT = f"{DATA_MOUNT}/{PRETRAINED_RELPATH}"   # submit's --pretrained-ckpt default
NO_PRETRAINED_CKPT = "none"              # --pretrained-ckpt none: pretrain from random weights
INCOMING_SUBDIR = "incoming"             # `data upload` stages archives and folders here
SOURCE_VOLUME = "source"                 # `data prepare --source-pvc`: that claim, read-only
SOURCE_MOUNT = "/source"
DATA_CONTAINER_NAME = "data"
LABEL_DATA_TASK = "sop-metric-job/data-task"     # prepare | status | upload, on data Jobs and pods
LABEL_DATA_RUN = "sop-metric-job/data-run"       # the run's name, on its Job and pod
LABEL_DATA_PVC = "sop-metric-job/data-pvc"       # on the volume record ConfigMap
ANNOTATION_DATA_SUBPATH = "sop-metric-job/data-subpath"
DATA_RECORD_KEY = "findings.json"        # what the data pods last reported, as a JSON list


def data_run_name(task: str, now: datetime.datetime | None = None, token: str | None = None) -> str:
    """A fresh name for a data Job or pod: `sop-data-<task>-<MMDD-HHMMSS>-<4 hex>`."""
    now = now if now is not None else datetime.datetime.now()
    token = token if token is not None else secrets.token_hex(2)
    return f"sop-data-{task}-{now:%m%d-%H%M%S}-{token}"


def data_record_configmap(pvc: str, subpath: str = "") -> str:
    """The ConfigMap recording what is on a data volume (submit reads it; no pod needed).

    One per claim and subPath: `sop-volume-<pvc>`, plus a digest of the subPath when there is one.
    """
    import hashlib

    name = f"sop-volume-{pvc}"
    if subpath.strip("/"):
        name += "-" + hashlib.sha256(subpath.strip("/").encode()).hexdigest()[:8]
    if len(name) > 253:  # a ConfigMap name is a DNS subdomain
        name = name[:244] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


# Longest pod-name suffix we allow: "-worker-" plus up to 3 digits (servers <= 1000).
_POD_SUFFIX_MAX = len(f"-{TASK_NAME}-") + 3
# Pod names become hostnames (svc plugin): 63 characters at most.
JOB_NAME_MAX = 63 - _POD_SUFFIX_MAX


def pod_name(job: str, index: int) -> str:
    """Name Volcano gives the pod of server `index`: `<job>-<task>-<index>`."""
    return f"{job}-{TASK_NAME}-{index}"


def pod_short_name(pod: str, job: str) -> str:
    """`worker-3` for `<job>-worker-3` (the prefix of log lines)."""
    prefix = f"{job}-"
    return pod[len(prefix):] if pod.startswith(prefix) else pod


def rank_table_configmap(job: str) -> str:
    """The ConfigMap holding the job's HCCL rank table (hccl-controller convention)."""
    return f"rings-config-{job}"


def scheduler_host(job: str) -> str:
    """DNS name of the pod with VC_TASK_INDEX 0, through the svc plugin's headless Service."""
    return f"{pod_name(job, 0)}.{job}"


def run_dir(job: str) -> str:
    """The job's run directory on the runs volume, as the pod sees it."""
    return f"{RUNS_MOUNT}/{job}"


def job_selector(job: str) -> str:
    """Label selector of the pods of a Volcano job."""
    return f"{LABEL_VOLCANO_JOB_NAME}={job}"


OUR_JOBS_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def default_job_name(loss: str, now: datetime.datetime | None = None, token: str | None = None) -> str:
    """A fresh job name: `sop-<loss>-<MMDD-HHMMSS>-<4 hex>`, unique and a valid DNS label."""
    now = now if now is not None else datetime.datetime.now()
    token = token if token is not None else secrets.token_hex(2)
    return f"sop-{loss}-{now:%m%d-%H%M%S}-{token}"
