"""Data for the job: SOP split lists, image decoding, transforms, rank-aware samplers, loading,
and a small demo dataset in SOP layout. Pure numpy + PIL (no MindSpore), so it is testable
and usable anywhere.
"""

from job.data.demo import make_demo_data
from job.data.images import decode_rgb
from job.data.lists import (
    SPLITS,
    ImageReport,
    SplitList,
    check_images,
    load_split,
    prepare_sop,
    read_ebay_file,
    read_list_file,
)
from job.data.loader import BatchLoader, iter_eval_batches
from job.data.sampler import PKBatchSampler, ShuffleBatchSampler, TripletTupleSampler
from job.data.transforms import MEAN, STD, EvalTransform, TrainTransform

__all__ = [
    "MEAN",
    "SPLITS",
    "STD",
    "BatchLoader",
    "EvalTransform",
    "ImageReport",
    "PKBatchSampler",
    "ShuffleBatchSampler",
    "SplitList",
    "TrainTransform",
    "TripletTupleSampler",
    "check_images",
    "decode_rgb",
    "iter_eval_batches",
    "load_split",
    "make_demo_data",
    "prepare_sop",
    "read_ebay_file",
    "read_list_file",
]
