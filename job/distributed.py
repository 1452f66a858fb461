"""Start-up of one training process among several (what each rank runs first).

Two modes, chosen from the environment the launcher (or msrun) sets:
- rank table: RANK_TABLE_FILE, RANK_SIZE > 1, RANK_ID, DEVICE_ID (HCCL on Ascend);
- dynamic cluster: MS_ROLE, MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM (msrun's way; the only
  one on CPU).
Neither set: a single process. After `init()`, data parallelism averages gradients.
"""
from __future__ import annotations

import logging
import os
import sys

from job.train.trainer import Ranks

log = logging.getLogger("job.distributed")


def mode_from_env(env=None) -> str:
    env = os.environ if env is None else env
    if env.get("MS_ROLE"):
        return "dynamic"
    if env.get("RANK_TABLE_FILE") and int(env.get("RANK_SIZE", "1") or 1) > 1:
        return "rank-table"
    return "single"


def init_distributed() -> Ranks:
    """Join the collective group if the environment asks for one; return this rank's place.

    A dynamic-cluster scheduler process (MS_ROLE=MS_SCHED) serves the cluster inside `init()`
    and exits here: it must not go on to train.
    """
    mode = mode_from_env()
    if mode == "single":
        return Ranks()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        sys.exit(0)
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=size)
    os.environ["RANK_ID"] = str(rank)     # the log prefix reads it
    return Ranks(rank, size)
