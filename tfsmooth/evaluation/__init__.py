"""Evaluation of attacks (paper §5): metrics, the resumable protocol, transfer, reports.

- :mod:`~tfsmooth.evaluation.metrics`: :math:`P_{suc}`, conditional mean distortion, operating
  characteristic, multi-ε combination (pure numpy).
- :mod:`~tfsmooth.evaluation.protocol`: :func:`evaluate_attack` (batches, multi-ε, resumable
  per-image JSONL records, optional ``tf.distribute`` strategy).
- :mod:`~tfsmooth.evaluation.transfer`: :func:`evaluate_transfer` (craft on A, test on B).
- :mod:`~tfsmooth.evaluation.presets`: the paper's settings and Tables 1–2.
- :mod:`~tfsmooth.evaluation.report`: ``results.json``, CSV and markdown tables.
- :mod:`~tfsmooth.evaluation.reproduce`: :func:`reproduce_mnist`.
- :mod:`~tfsmooth.evaluation.distributed`: :class:`WorkerSpec` (one process of a multi-worker
  run, from ``TF_CONFIG``) and :func:`~tfsmooth.evaluation.distributed.select_devices`
  (``--devices``: the ``MirroredStrategy`` of one process).
"""

from tfsmooth.evaluation.distributed import WorkerSpec
from tfsmooth.evaluation.metrics import (
    combine_multi_epsilon,
    conditional_mean_distortion,
    operating_characteristic,
    success_probability,
)
from tfsmooth.evaluation.presets import (
    ATTACK_NAMES,
    IMAGENET,
    MNIST,
    MNIST_QUICK,
    PAPER_RESULTS,
    PRESETS,
    AttackPreset,
    Preset,
    build_attacks,
    get_preset,
)
from tfsmooth.evaluation.protocol import (
    RECORDS_FORMAT,
    EvaluationResult,
    data_fingerprint,
    evaluate_attack,
    model_fingerprint,
    read_records,
)
from tfsmooth.evaluation.report import (
    REQUIRED_ROW_KEYS,
    markdown_table,
    read_results,
    write_csv,
    write_results,
)
from tfsmooth.evaluation.reproduce import MNIST_MODELS, reproduce_mnist
from tfsmooth.evaluation.transfer import TransferResult, evaluate_transfer

__all__ = [
    "ATTACK_NAMES",
    "IMAGENET",
    "MNIST",
    "MNIST_MODELS",
    "MNIST_QUICK",
    "PAPER_RESULTS",
    "PRESETS",
    "RECORDS_FORMAT",
    "REQUIRED_ROW_KEYS",
    "AttackPreset",
    "EvaluationResult",
    "Preset",
    "TransferResult",
    "WorkerSpec",
    "build_attacks",
    "combine_multi_epsilon",
    "conditional_mean_distortion",
    "data_fingerprint",
    "evaluate_attack",
    "evaluate_transfer",
    "get_preset",
    "markdown_table",
    "model_fingerprint",
    "operating_characteristic",
    "read_records",
    "read_results",
    "reproduce_mnist",
    "success_probability",
    "write_csv",
    "write_results",
]

# ImageNet reproduction (Tables 1-3) and attacks on a user's own model and images.
from tfsmooth.evaluation.reproduce_imagenet import (  # noqa: E402
    IMAGENET_MODELS,
    IMAGENET_QUICK,
    TABLE3_PAPER_RESULTS,
    attack_images,
    load_imagenet_model,
    reproduce_imagenet,
)

__all__ += [
    "IMAGENET_MODELS",
    "IMAGENET_QUICK",
    "TABLE3_PAPER_RESULTS",
    "attack_images",
    "load_imagenet_model",
    "reproduce_imagenet",
]
