"""Reproduction of the paper's ImageNet experiments (Tables 1–3) and attacks on a user's model.

:func:`reproduce_imagenet` runs the six attacks with the settings of
:data:`~tfsmooth.evaluation.presets.IMAGENET` (FGSM / I-FGSM ``ε = 0.1255``, C&W ``m = 0``,
``c = 100``, smoothing ``α = 0.997`` with 50 CG iterations) on the NIPS 2017 dev set
(:func:`~tfsmooth.data.load_nips17`) against

- InceptionV3 or ResNetV2-50 from TF-Hub (Table 1; :func:`~tfsmooth.models.load_hub_model`,
  found offline in the TF-Hub cache) or any SavedModel directory,
- with ``adv_checkpoint``, the adversarially trained InceptionV3 of Kurakin et al. (Table 2;
  :func:`~tfsmooth.models.load_slim_inception_v3`),
- with ``defense`` / ``transfer``, the transferability scenario of §5.4 (Table 3): adversarials
  crafted on the white-box model with a single distortion target are fed to InceptionV3
  behind the bilateral filter of :meth:`~tfsmooth.defenses.BilateralFilter.paper`
  (``defense``) and to the adversarially trained InceptionV3 (``transfer``),

and writes into ``out_dir``:

- ``records/<model>__<attack>.jsonl`` — per-image records of the white-box runs (resumable,
  see :mod:`tfsmooth.evaluation.protocol`); ``C&W`` is spelled ``CW`` in file names;
- ``transfer/<source>__to__<target>__<attack>.jsonl`` — per-image records of the transfer
  runs (resumable the same way, :mod:`tfsmooth.evaluation.records`);
- ``results.json`` (same schema as the MNIST reproduction, :mod:`tfsmooth.evaluation.report`;
  rows carry a ``table`` key: ``"1"``, ``"2"`` or ``"3"``) and ``results.csv``;
- ``report.md`` — our numbers beside the paper's;
- ``oc_<model>.png`` — operating characteristics (Fig. 3) if matplotlib is installed.

The folder is locked while a run writes to it, and earlier results in it are never replaced
unless asked (``resume`` for the same run, ``overwrite``): see :class:`tfsmooth._io.OutputDir`.

:func:`attack_images` attacks a folder of the user's own images with the user's own model
(a SavedModel or a ``.keras`` file) and writes adversarial and perturbation PNGs, per-image JSONL
records (resumable) and a summary; it backs ``tfsmooth attack``.

Labels: the NIPS 2017 labels are 1..1000 with 0 = background, the convention of the TF-Hub and
TF-slim classifiers (1001 logits), so they index the logits directly. A model with 1000 logits
gets a background logit prepended (``label_offset=1``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth._io import OutputDir, save_png
from tfsmooth._version import __version__
from tfsmooth.attacks.base import Attack
from tfsmooth.data.folder import LABEL_COLUMNS, load_labels_csv  # noqa: F401 (re-exported)
from tfsmooth.evaluation import metrics
from tfsmooth.evaluation import presets as presets_lib
from tfsmooth.evaluation import report as report_lib
from tfsmooth.evaluation.protocol import (
    EvaluationResult,
    _json_float,
    _make_progress,
    _none_if_nan,
    evaluate_attack,
)
from tfsmooth.evaluation.records import (
    RECORDS_FORMAT,
    TRANSFER_RECORDS_FORMAT,
    RecordFile,
    data_fingerprint,
    model_fingerprint,
)
from tfsmooth.models.base import PREPROCESSING, Model

logger = logging.getLogger(__name__)

__all__ = [
    "ATTACK_KINDS",
    "IMAGENET_MODELS",
    "IMAGENET_QUICK",
    "TABLE3_PAPER_RESULTS",
    "TRANSFER_EPSILONS",
    "apply_overrides",
    "attack_images",
    "load_imagenet_model",
    "load_labels_csv",
    "reproduce_imagenet",
]

#: The classifiers of the paper's Table 1 by short name, and their TF-Hub handles.
IMAGENET_MODELS = {
    "inception_v3": "google/imagenet/inception_v3/classification/5",
    "resnet_v2_50": "google/imagenet/resnet_v2_50/classification/5",
}

#: ``tfsmooth attack --attack`` names and the paper's attack names.
ATTACK_KINDS = {
    "fgsm": "FGSM",
    "ifgsm": "I-FGSM",
    "pgd2": "PGD2",
    "cw": "C&W",
    "spgd2": "sPGD2",
    "scw": "sC&W",
}

#: Single distortion targets of the transferability scenario (§5.4: the attacker "is not
#: allowed to test different distortion targets"). FGSM / I-FGSM keep ``ε = 0.1255``; for PGD2
#: and sPGD2 the paper's "ε = 5" (its Table 3 reports D ≈ 5.1 for PGD2).
TRANSFER_EPSILONS: dict[str, float | None] = {
    "FGSM": 0.1255,
    "I-FGSM": 0.1255,
    "PGD2": 5.0,
    "C&W": None,
    "sPGD2": 5.0,
    "sC&W": None,
}

#: Paper Table 3 (transferability from InceptionV3): ``{target: {attack: (Psuc, D)}}``.
TABLE3_PAPER_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    "bilateral": {
        "FGSM": (0.77, 5.13),
        "I-FGSM": (0.82, 5.12),
        "PGD2": (1.00, 5.14),
        "C&W": (0.82, 4.75),
        "sPGD2": (0.95, 5.13),
        "sC&W": (0.68, 2.91),
    },
    "adv_inception_v3": {
        "FGSM": (0.04, 10.20),
        "I-FGSM": (0.02, 10.10),
        "PGD2": (0.12, 10.26),
        "C&W": (0.02, 10.21),
        "sPGD2": (0.01, 10.17),
        "sC&W": (0.01, 4.63),
    },
}


def _quick_attacks() -> dict[str, presets_lib.AttackPreset]:
    fewer = {
        "I-FGSM": {"steps": 5},
        "PGD2": {"steps": 5},
        "sPGD2": {"steps": 5},
        "C&W": {"binary_search_steps": 2, "steps": 40},
        "sC&W": {"binary_search_steps": 2, "steps": 40},
    }
    return {
        name: preset.replace(kwargs=fewer.get(name, {}))
        for name, preset in presets_lib.IMAGENET.attacks.items()
    }


#: :data:`~tfsmooth.evaluation.presets.IMAGENET` with fewer iterations (``--quick``): I-FGSM,
#: PGD2, sPGD2 5 steps; C&W / sC&W 2 rounds × 40 Adam steps. The smoothing keeps the paper's
#: α = 0.997 and 50 CG iterations. Not the paper's protocol: for smoke runs.
IMAGENET_QUICK = presets_lib.Preset(
    "imagenet-quick",
    "imagenet",
    _quick_attacks(),
    quick=True,
    notes=(
        "QUICK run — fewer iterations than the paper's protocol: I-FGSM, PGD2, sPGD2 5 steps; "
        "C&W/sC&W 2 rounds × 40 steps (smoothing as the paper: α = 0.997, 50 CG iterations). "
        "Numbers are indicative only."
    ),
)


# -- helpers -------------------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text.replace("&", "")) or "model"


def _file_name(model: str, attack: str, suffix: str = ".jsonl") -> str:
    return f"{_safe_name(model)}__{_safe_name(attack)}{suffix}"


def apply_overrides(
    preset: presets_lib.Preset, overrides: dict[str, dict[str, Any]] | None
) -> presets_lib.Preset:
    """A preset with some attack settings changed.

    Args:
        preset: the preset.
        overrides: ``{attack name: {key: value}}``; a key is a keyword argument of the attack
            class (``"steps"``), or ``"smoother.<key>"`` for the smoother (``"smoother.max_iter"``).
            Overrides of attacks the preset does not hold are ignored.

    Returns:
        The new :class:`~tfsmooth.evaluation.presets.Preset`.

    Raises:
        ValueError: an unknown attack name, or a smoother key for an attack without smoother.

    Example:
        >>> quick = apply_overrides(IMAGENET_QUICK, {"sC&W": {"steps": 3, "smoother.max_iter": 5}})
        >>> quick.attacks["sC&W"].kwargs["steps"], quick.attacks["sC&W"].smoother["max_iter"]
        (3, 5)
    """
    if not overrides:
        return preset
    if not isinstance(overrides, dict):
        raise TypeError(f"`overrides` must be a dict, got {type(overrides).__name__}")
    changed = dict(preset.attacks)
    for name, settings in overrides.items():
        if name not in presets_lib.ATTACK_NAMES:
            raise ValueError(
                f"`overrides` keys must be among {presets_lib.ATTACK_NAMES}, got {name!r}"
            )
        if not isinstance(settings, dict):
            raise TypeError(f"`overrides[{name!r}]` must be a dict, got {settings!r}")
        if name not in changed:
            continue
        kwargs = {k: x for k, x in settings.items() if not k.startswith("smoother.")}
        smoother = {k[len("smoother.") :]: x for k, x in settings.items() if k not in kwargs}
        attack = changed[name]
        if smoother:
            if attack.smoother is None:
                raise ValueError(f"attack {name!r} has no smoother; cannot set {sorted(smoother)}")
            attack = attack.replace(smoother={**attack.smoother, **smoother})
        changed[name] = attack.replace(kwargs=kwargs)
    return dataclasses.replace(preset, attacks=changed)


def _align_labels(net: Model) -> Model:
    """A 1000-logit model gets a background logit (labels 1..1000 with 0 = background)."""
    if net.num_classes == 1000 and net.label_offset == 0:
        logger.info("%s has 1000 logits: prepending a background logit (1001-class labels)", net)
        net.label_offset = 1
        net.num_classes = 1001
    return net


def load_imagenet_model(
    model: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    preprocessing: str | None = None,
    align_labels: bool = True,
) -> tuple[str, Model]:
    """The classifier named by ``model`` and a short name for reports.

    Args:
        model: ``"inception_v3"`` or ``"resnet_v2_50"`` (the TF-Hub models of the paper, looked
            up in the TF-Hub cache, see :func:`~tfsmooth.models.hub_cache_path`), another TF-Hub
            handle, a SavedModel directory, or a ``.keras`` / ``.h5`` Keras model file.
        cache_dir: TF-Hub cache directory (default ``$TFHUB_CACHE_DIR``).
        input_size: ``(height, width)`` the model takes (default: known, or its signature's).
        preprocessing: optional name from :data:`~tfsmooth.models.base.PREPROCESSING` applied
            to the ``[0, 1]`` images before the network (TF-Hub models take ``[0, 1]``: none).
        align_labels: give a model with 1000 logits a background logit 0, so that it takes the
            1001-class labels of the NIPS 2017 data (``label_offset=1``).

    Returns:
        ``(name, model)``: ``name`` is the short name (``"inception_v3"``) or the directory /
        file name; ``model`` a :class:`~tfsmooth.models.Model` with bounds ``(0, 1)``.

    Raises:
        FileNotFoundError: no such path, or a handle that is not in the TF-Hub cache (the
            message says where to put it).
        ValueError: not a usable SavedModel / Keras file.

    Example:
        >>> load_imagenet_model("inception_v3", cache_dir="/nowhere")
        Traceback (most recent call last):
        ...
        FileNotFoundError: TF-Hub model ... is not in the TF-Hub cache ...
    """
    from tfsmooth.models.hub import load_hub_model

    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"`model` must be a model name or a path, got {type(model).__name__}")
    if preprocessing is not None:
        v.check_choice(preprocessing, "preprocessing", PREPROCESSING)
    text = os.fspath(model)
    path = pathlib.Path(text).expanduser()
    if text in IMAGENET_MODELS:
        net = load_hub_model(IMAGENET_MODELS[text], cache_dir=cache_dir, input_size=input_size)
        name = text
    elif path.is_file() and path.suffix.lower() in (".keras", ".h5"):
        import keras

        try:
            network = keras.saving.load_model(str(path), compile=False)
        except Exception as err:  # Keras raises assorted errors on foreign files
            raise ValueError(f"could not load the Keras model {str(path)!r}: {err}") from err
        shape = tuple(network.input_shape[1:3]) if hasattr(network, "input_shape") else ()
        fixed = shape if len(shape) == 2 and None not in shape else None
        if input_size is not None and fixed is not None and tuple(input_size) != fixed:
            raise ValueError(
                f"Keras model {str(path)!r} takes images of size {fixed} (height, width), got "
                f"input_size={tuple(input_size)}"
            )
        net = Model(network, input_size=input_size or fixed, name=path.stem)
        name = path.stem
    elif path.is_file():
        raise ValueError(
            f"expected a SavedModel directory or a .keras / .h5 file, got the file {text!r}"
        )
    else:
        net = load_hub_model(model, cache_dir=cache_dir, input_size=input_size)
        name = path.name if path.exists() else net.name
    if preprocessing is not None:
        net.preprocessing = preprocessing
    return name, _align_labels(net) if align_labels else net


def _defended(net: Model, name: str) -> Model:
    """``net`` behind the bilateral filter of the paper's Table 3."""
    from tfsmooth.defenses import BilateralFilter

    then = net.preprocessing
    return Model(
        net.model,
        bounds=net.bounds,
        preprocessing=BilateralFilter.paper(then=then),
        input_size=net.input_size,
        label_offset=net.label_offset,
        num_classes=net.num_classes,
        name=name,
    )


def _progress_fn(progress: Any, model: str, attack: str) -> Any:
    if callable(progress) and progress is not True:
        return lambda done, total: progress(model, attack, done, total)
    return progress


# -- transferability (Table 3) --------------------------------------------------------------------
def _transfer_path(source_name: str, targets: list[str], attack_name: str) -> str:
    """``transfer/<source>__to__<targets>__<attack>.jsonl`` (relative to the output folder)."""
    return "transfer/" + _file_name(f"{source_name}__to__{'+'.join(sorted(targets))}", attack_name)


def _transfer(
    store: RecordFile,
    source: Model,
    targets: dict[str, Model],
    attack: Attack,
    images: np.ndarray,
    labels: np.ndarray,
    epsilon: Any,
    batch_size: int,
    progress: Any,
) -> None:
    """Crafts on ``source`` and tests on every target, one record per image (§5.4).

    The images classified correctly by the source and by at least one target are attacked, in
    the fixed batches of ``store`` (each call padded to the same size), so a resumed run
    attacks the same batches as an uninterrupted one.
    """
    n0 = images.shape[0]
    names = sorted(targets)
    clean_source = source.predict(images, batch_size).numpy() == labels
    correct = {
        name: clean_source & (targets[name].predict(images, batch_size).numpy() == labels)
        for name in names
    }
    chosen = np.logical_or.reduce([correct[name] for name in names])
    size = min(batch_size, n0)
    report = _make_progress(progress, n0)
    for batch in store.batches(batch_size):
        if batch.missing.size:
            started = time.perf_counter()
            idx = batch.indices[chosen[batch.indices]]
            ok = np.zeros(idx.size, bool)
            l2 = np.zeros(idx.size)
            predicted = {name: np.zeros(idx.size, np.int64) for name in names}
            if idx.size:
                pad = np.concatenate([idx, np.repeat(idx[-1:], size - idx.size)])
                x = tf.constant(images[pad])
                y = tf.constant(labels[pad])
                result = attack(source, x, y, epsilons=epsilon)
                adversarial = result.clipped[: idx.size]
                ok = np.asarray(result.success)[0][: idx.size]
                delta = tf.reshape(adversarial - x[: idx.size], [idx.size, -1])
                l2 = tf.norm(delta, axis=1).numpy()
                for name in names:
                    predicted[name] = targets[name].predict(adversarial, batch_size).numpy()
            seconds = (time.perf_counter() - started) / batch.indices.size
            position = {int(index): j for j, index in enumerate(idx)}
            records = []
            for index in batch.indices:
                index = int(index)
                j = position.get(index)
                label = int(labels[index])
                records.append(
                    {
                        "index": index,
                        "label": label,
                        "attacked": j is not None,
                        "correct": {name: bool(correct[name][index]) for name in names},
                        "success_source": j is not None and bool(ok[j]),
                        "l2": None if j is None else _json_float(l2[j]),
                        "fooled": {
                            name: j is not None and int(predicted[name][j]) != label
                            for name in names
                        },
                        "seconds": seconds,
                    }
                )
            store.append(records, batch=batch.id)
        if report:
            report(len(store.records))


def _transfer_summary(store: RecordFile, epsilon: Any) -> dict[str, dict[str, Any]]:
    """One row per target from the records of a transfer run."""
    records = [store.records[i] for i in range(store.n_images)]
    names = sorted(store.header["targets"])
    l2 = np.array([np.nan if r["l2"] is None else r["l2"] for r in records], np.float64)
    fooled_source = np.array([r["success_source"] for r in records], bool)
    seconds = float(sum(r["seconds"] or 0.0 for r in records))
    rows = {}
    for name in names:
        mask = np.array([r["correct"][name] for r in records], bool)
        success = np.array([r["fooled"][name] for r in records], bool) & mask
        rows[name] = {
            "n0": len(records),
            "n": int(mask.sum()),
            "n_success": int(success.sum()),
            "psuc": _none_if_nan(metrics.success_probability(success, mask)),
            "mean_l2": _none_if_nan(metrics.conditional_mean_distortion(l2, success)),
            "psuc_source": _none_if_nan(metrics.success_probability(fooled_source & mask, mask)),
            "mean_l2_source": _none_if_nan(
                metrics.conditional_mean_distortion(l2, fooled_source & mask)
            ),
            "epsilon": epsilon,
            "seconds": round(seconds, 3),
        }
    return rows


# -- the reproduction ----------------------------------------------------------------------------
def reproduce_imagenet(
    out_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] = "inception_v3",
    adv_checkpoint: str | os.PathLike[str] | None = None,
    n: int | None = None,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = False,
    batch_size: int = 10,
    strategy: Any = None,
    attacks: Any = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    defense: bool = False,
    transfer: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Runs the paper's ImageNet experiments and writes results, report and figures.

    Args:
        out_dir: output directory (created).
        data_dir: the NIPS 2017 dev set (``dev_dataset.csv`` + ``<ImageId>.png``, see
            :mod:`tfsmooth.data.nips17`).
        model: ``"inception_v3"`` or ``"resnet_v2_50"`` (TF-Hub, from the TF-Hub cache), or a
            SavedModel directory (inputs in ``[0, 1]``, 1001 logits with 0 = background; 1000
            logits are aligned automatically). Table 1.
        adv_checkpoint: optional TF1-slim checkpoint of the adversarially trained InceptionV3
            (``adv_inception_v3.ckpt``, see :data:`~tfsmooth.models.slim.SLIM_CHECKPOINTS`),
            attacked too (Table 2).
        n: number of images (the first ``n`` of the CSV); ``None`` for all (1000).
        quick: use :data:`IMAGENET_QUICK` (fewer iterations; the report says so).
        resume: continue the run recorded in ``out_dir`` (the same arguments; by the same
            batches); without it (or ``overwrite``), earlier results raise ``ValueError``.
        overwrite: replace the files of an earlier run (or foreign files) in ``out_dir``
            (``--overwrite``); with ``resume``, record files of the same run are continued.
        progress: ``True`` for progress bars, or a callable ``progress(model, attack, done,
            total)``.
        batch_size: images per batch.
        strategy: optional ``tf.distribute.Strategy`` for the white-box runs.
        attacks: subset of the attack names (default all six).
        overrides: ``{attack name: {key: value}}`` (see :func:`apply_overrides`), recorded in
            ``meta``.
        defense: Table 3, bilateral column: transfer the attacks crafted on ``model`` to
            ``model`` behind :meth:`~tfsmooth.defenses.BilateralFilter.paper`.
        transfer: Table 3, adversarial-training column: transfer them to the model of
            ``adv_checkpoint`` (required).
        cache_dir: TF-Hub cache directory (default ``$TFHUB_CACHE_DIR``).
        figures: draw the operating characteristics (needs matplotlib; skipped if missing).

    Returns:
        A summary dict: ``rows`` (as in ``results.json``), ``meta``, ``table`` (markdown),
        ``files`` (paths written) and ``seconds``.

    Raises:
        FileNotFoundError: missing data, model not in the TF-Hub cache, missing checkpoint.
        ValueError: bad arguments, bad data, a model or checkpoint that cannot be used, an
            ``out_dir`` that holds earlier results (see ``resume`` and ``overwrite``), record
            files of another run.
        RunLockedError: another run writes to ``out_dir`` (an ``OSError``).

    Example:
        >>> reproduce_imagenet("/tmp/never", data_dir="/tmp/never", transfer=True)
        Traceback (most recent call last):
        ...
        ValueError: `transfer=True` needs `adv_checkpoint` (the model the attacks transfer to)
    """
    from tfsmooth.data import load_nips17
    from tfsmooth.models.slim import load_slim_inception_v3

    started = time.perf_counter()
    if n is not None:
        n = v.check_int_at_least(n, "n", 1)
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    for flag, value in (("quick", quick), ("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise TypeError(f"`{flag}` must be a bool, got {value!r}")
    for flag, value in (("defense", defense), ("transfer", transfer)):
        if not isinstance(value, bool):
            raise TypeError(f"`{flag}` must be a bool, got {value!r}")
    if transfer and adv_checkpoint is None:
        raise ValueError(
            "`transfer=True` needs `adv_checkpoint` (the model the attacks transfer to)"
        )
    preset = IMAGENET_QUICK if quick else presets_lib.IMAGENET
    if attacks is not None:
        preset = preset.select(attacks)
    preset = apply_overrides(preset, overrides)

    data = load_nips17(data_dir, limit=n)
    if n is not None and len(data) < n:
        raise ValueError(
            f"`n` must be at most the number of images of the data set ({len(data)} in "
            f"{data.source}), got {n}"
        )
    images, labels = data.images, data.labels

    main_name, main_net = load_imagenet_model(model, cache_dir=cache_dir)
    nets: dict[str, Model] = {main_name: main_net}
    adv_name = None
    if adv_checkpoint is not None:
        adv_net = load_slim_inception_v3(adv_checkpoint)
        adv_name = adv_net.name if adv_net.name != main_name else f"{adv_net.name}_adv"
        nets[adv_name] = adv_net
    built = presets_lib.build_attacks(preset)
    target_names = (["bilateral"] if defense else []) + (
        [adv_name] if transfer and adv_name is not None else []
    )
    run = {
        "experiment": "imagenet",
        "models": list(nets),
        "attacks": list(built),
        "n_images": int(images.shape[0]),
        "quick": bool(quick),
        "overrides": overrides or {},
        "batch_size": batch_size,
        "transfer_targets": target_names,
    }
    outputs = [f"records/{_file_name(m, a)}" for m in nets for a in built]
    if target_names:
        outputs += [_transfer_path(main_name, target_names, a) for a in built]
    outputs += ["results.json", "results.csv", "report.md"]
    if figures:
        outputs += [f"oc_{_safe_name(m)}.png" for m in nets]
    subdirs = ["records", "transfer"] if target_names else ["records"]
    run_dir = OutputDir(
        out_dir, run=run, outputs=outputs, subdirs=subdirs, resume=resume, overwrite=overwrite
    )
    with run_dir:
        out = run_dir.path
        rows: list[dict[str, Any]] = []
        results: dict[str, dict[str, EvaluationResult]] = {}
        accuracy: dict[str, float] = {}
        for model_name, net in nets.items():
            results[model_name] = {}
            table = "2" if model_name == adv_name else "1"
            for attack_name, (attack, epsilons) in built.items():
                logger.info("reproduce_imagenet: %s on %s", attack_name, model_name)
                result = evaluate_attack(
                    net,
                    attack,
                    images,
                    labels,
                    epsilons=epsilons,
                    batch_size=batch_size,
                    records_path=out / "records" / _file_name(model_name, attack_name),
                    resume=resume,
                    overwrite=overwrite,
                    progress=_progress_fn(progress, model_name, attack_name),
                    strategy=strategy,
                    attack_name=attack_name,
                    model_name=model_name,
                )
                results[model_name][attack_name] = result
                accuracy[model_name] = result.clean_accuracy
                rows.append({**result.to_row(), "table": table, "scenario": "white box"})

        targets: dict[str, Model] = {}
        if defense:
            targets["bilateral"] = _defended(main_net, f"{main_name}+bilateral")
        if transfer and adv_name is not None:
            targets[adv_name] = nets[adv_name]
        transfer_settings: dict[str, Any] = {}
        if targets:
            rows += _transfer_rows(
                out,
                main_name,
                main_net,
                targets,
                preset,
                images,
                labels,
                batch_size,
                resume,
                overwrite,
                progress,
                transfer_settings,
            )

        meta = {
            "experiment": "imagenet",
            "data_source": data.source,
            "n_test_images": int(images.shape[0]),
            "clean_accuracy": accuracy,
            "version": __version__,
            "quick": bool(quick),
            "models": {name: repr(net) for name, net in nets.items()},
            "preset": preset.to_dict(),
            "overrides": overrides or {},
            "batch_size": batch_size,
            "transfer": transfer_settings,
            "transfer_targets": [
                "the model behind the bilateral filter (σ 0.5 px / 0.2, Table 3 left)"
                if name == "bilateral"
                else f"{name} (adversarially trained, Table 3 right)"
                for name in targets
            ],
        }
        files = {
            "results": str(report_lib.write_results(out / "results.json", rows, meta)),
            "csv": str(report_lib.write_csv(out / "results.csv", rows)),
        }
        paper = dict(presets_lib.PAPER_RESULTS["imagenet"])
        white = [r for r in rows if r["table"] in ("1", "2")]
        table_md = report_lib.markdown_table(white, paper)
        transfer_rows = [r for r in rows if r["table"] == "3"]
        table3_md = ""
        if transfer_rows:
            table3_paper = {f"{main_name}->{t}": ref for t, ref in TABLE3_PAPER_RESULTS.items()}
            if adv_name is not None:
                table3_paper[f"{main_name}->{adv_name}"] = TABLE3_PAPER_RESULTS["adv_inception_v3"]
            table3_md = report_lib.markdown_table(transfer_rows, table3_paper)
        if figures:
            files.update(_figures(out, results))
        files["report"] = str(_write_report(out / "report.md", table_md, table3_md, meta, files))
        seconds = time.perf_counter() - started
        return {
            "rows": rows,
            "meta": meta,
            "table": table_md + ("\n" + table3_md if table3_md else ""),
            "files": files,
            "seconds": seconds,
        }


def _transfer_rows(
    out: pathlib.Path,
    source_name: str,
    source: Model,
    targets: dict[str, Model],
    preset: presets_lib.Preset,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    resume: bool,
    overwrite: bool,
    progress: Any,
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Table 3: each attack crafted once on the source (one epsilon, no early stop).

    Per-image records in ``transfer/<source>__to__<targets>__<attack>.jsonl`` (a
    :class:`~tfsmooth.evaluation.records.RecordFile`, resumable like the white-box runs).
    """
    fingerprint = data_fingerprint(images, labels)
    source_fingerprint = model_fingerprint(source)
    names = sorted(targets)
    rows: list[dict[str, Any]] = []
    for attack_name, attack_preset in preset.attacks.items():
        epsilon = TRANSFER_EPSILONS[attack_name]
        single = attack_preset.replace(epsilons=epsilon)
        if "stop_on_success" in single.kwargs:  # the attacker spends the whole budget
            single = single.replace(kwargs={"stop_on_success": False})
        attack, eps = single.build()
        settings[attack_name] = {"epsilon": eps, "attack": repr(attack)}
        header = {
            "format": TRANSFER_RECORDS_FORMAT,
            "model": source_name,
            "model_fingerprint": source_fingerprint,
            "targets": names,
            "target_models": {name: repr(targets[name]) for name in names},
            "attack": attack_name,
            "attack_config": repr(attack),
            "epsilons": eps,
            "batch_size": batch_size,
            "n_images": int(images.shape[0]),
            "data_fingerprint": fingerprint,
        }
        path = out / _transfer_path(source_name, names, attack_name)
        logger.info("reproduce_imagenet: transfer %s from %s", attack_name, source_name)
        with RecordFile(path, header, resume=resume, overwrite=overwrite) as store:
            report = _progress_fn(progress, f"{source_name}->{'+'.join(names)}", attack_name)
            _transfer(store, source, targets, attack, images, labels, eps, batch_size, report)
        for target, row in _transfer_summary(store, eps).items():
            rows.append(
                {
                    "model": f"{source_name}->{target}",
                    "attack": attack_name,
                    **{k: x for k, x in row.items() if k not in ("model", "attack")},
                    "table": "3",
                    "scenario": "transfer",
                    "source": source_name,
                    "target": target,
                }
            )
    return rows


def _figures(out: pathlib.Path, results: dict[str, dict[str, EvaluationResult]]) -> dict[str, str]:
    files: dict[str, str] = {}
    try:
        from tfsmooth import plot

        for model_name, by_attack in results.items():
            path = out / f"oc_{_safe_name(model_name)}.png"
            plot.plot_operating_characteristics(
                by_attack, path, title=f"Operating characteristics, ImageNet, {model_name}"
            )
            files[f"oc_{model_name}"] = str(path)
    except ImportError as err:
        logger.warning("figures skipped: %s", err)
    return files


def _write_report(
    path: pathlib.Path, table: str, table3: str, meta: dict[str, Any], files: dict[str, str]
) -> pathlib.Path:
    lines = report_lib.report_preamble(
        "ImageNet reproduction of *Smooth Adversarial Examples* (Tables 1–3)",
        f"{meta['data_source']}, {meta['n_test_images']} images (the paper uses all 1,000 of "
        "the NIPS 2017 dev set); paper's clean accuracy: InceptionV3 0.96, ResNetV2-50 0.93",
        meta,
    )
    if meta["overrides"]:
        lines.append(f"- overrides: `{json.dumps(meta['overrides'])}`")
    lines += [
        "",
        "## White box (Tables 1 and 2)",
        "",
        "Psuc = N_suc / N over the correctly classified images; D = mean L2 distortion over the "
        "successes (pixels in [0, 1]). `inception_v3` and `resnet_v2_50` are Table 1 (ImageNet "
        "columns), `adv_inception_v3` Table 2.",
        "",
        table,
    ]
    if table3:
        eps = ", ".join(
            f"{name} ε = {setting['epsilon']}"
            for name, setting in meta["transfer"].items()
            if setting["epsilon"] is not None
        )
        lines += [
            "",
            "## Transferability (Table 3)",
            "",
            "Adversarials crafted on the white-box model with a single distortion target "
            f"({eps}; no early stop), tested on {' and on '.join(meta['transfer_targets'])}. "
            "N counts the images both models classify correctly; Psuc and D are measured on the "
            "target.",
            "",
            table3,
        ]
    lines += report_lib.figure_line(files, lambda k: k.startswith("oc_"))
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- attacking a user's own model and images ------------------------------------------------------
# The labels CSV reader (LABEL_COLUMNS, load_labels_csv) lives in tfsmooth.data.folder (layer L2);
# it is imported above and re-exported from here for existing callers.


def _display_perturbation(delta: np.ndarray) -> np.ndarray:
    """Each channel mapped independently to ``[0, 1]`` (paper Fig. 4); flat channels to 0.5."""
    low = delta.min(axis=(0, 1), keepdims=True)
    high = delta.max(axis=(0, 1), keepdims=True)
    span = high - low
    return np.where(span > 0, (delta - low) / np.where(span > 0, span, 1.0), 0.5)


def _output_stems(file_names: list[str]) -> list[str]:
    stems = [pathlib.Path(name).stem for name in file_names]
    if len(set(stems)) < len(stems):
        return [_safe_name(name) for name in file_names]
    return stems


def attack_images(
    model: Any,
    images_dir: str | os.PathLike[str],
    attack: str,
    out_dir: str | os.PathLike[str],
    *,
    labels: Any = "predicted",
    n: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    epsilons: Any = None,
    input_size: tuple[int, int] | None = None,
    preprocessing: str | None = None,
    batch_size: int = 8,
    quick: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: Any = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Attacks a folder of images with the paper's ImageNet settings; writes PNGs and records.

    Writes into ``out_dir``: ``adversarial/<name>.png`` and ``perturbation/<name>.png`` (each
    channel scaled to ``[0, 1]`` as in the paper's Fig. 4) for every image attacked
    successfully, ``records.jsonl`` (one record per image, same format as
    :func:`~tfsmooth.evaluation.evaluate_attack` plus ``file``, ``adversarial``,
    ``perturbation`` and ``png_success``: whether the 8-bit PNG is still adversarial), and
    ``summary.json`` (``{"meta", "rows"}`` as ``results.json``).

    Args:
        model: a :class:`~tfsmooth.models.Model`, or anything :func:`load_imagenet_model`
            loads (a SavedModel directory, a ``.keras`` file, ``"inception_v3"``, ...).
        images_dir: folder of images (PNG / JPEG), read with
            :func:`~tfsmooth.data.load_image_folder`.
        attack: ``"fgsm"``, ``"ifgsm"``, ``"pgd2"``, ``"spgd2"``, ``"cw"`` or ``"scw"`` (or the
            paper's names ``"FGSM"``, ..., ``"sC&W"``).
        out_dir: output directory.
        labels: ``"predicted"`` (default: the model's own predictions on the clean images, so
            every image counts and success means the prediction changed), a CSV file with the
            columns ``file,label`` (:func:`load_labels_csv`), or an integer array.
        n: attack only the first ``n`` images (by file name).
        resume: continue the run recorded in ``out_dir/records.jsonl`` (the same arguments; by the
            same fixed batches as an uninterrupted run, so the results are the same).
        overwrite: replace the files of an earlier run (or foreign files) in ``out_dir``
            (``--overwrite``).
        epsilons: for FGSM, I-FGSM, PGD2, sPGD2: a number or a list (one run each, the smallest
            successful distortion kept); default the paper's (0.1255, or 1..6 for the L2
            attacks). Not for C&W / sC&W.
        input_size: ``(height, width)`` the images are brought to (center crop + resize) and
            the model takes; default the model's fixed size, else the images' own (equal) size.
        preprocessing: a :data:`~tfsmooth.models.base.PREPROCESSING` name for a model that
            does not take ``[0, 1]`` images (only when ``model`` is loaded here).
        batch_size: images per batch.
        quick: :data:`IMAGENET_QUICK` (fewer iterations).
        overrides: ``{attack name: {key: value}}`` (see :func:`apply_overrides`).
        progress: ``True`` for a progress bar, or a callable ``progress(done, total)``.
        cache_dir: TF-Hub cache directory for named models.

    Returns:
        A summary dict: ``row`` (model, attack, n, n_success, psuc, mean_l2, seconds, ...),
        ``meta``, ``files`` and ``seconds``.

    Raises:
        FileNotFoundError: missing model, image folder or labels file.
        ValueError: unusable model, images of other sizes than the model takes, bad labels,
            earlier results in ``out_dir`` (without ``resume`` or ``overwrite``), records of
            another run.
        RunLockedError: another run writes to ``out_dir`` (an ``OSError``).

    Example:
        >>> attack_images(lambda x: x[:, 0, 0], "/tmp", "bim", "/tmp/out")
        Traceback (most recent call last):
        ...
        ValueError: `attack` must be one of ('fgsm', 'ifgsm', 'pgd2', 'cw', 'spgd2', 'scw'), got 'bim'
    """
    from tfsmooth.data.folder import load_image_folder

    started = time.perf_counter()
    by_paper_name = {name: kind for kind, name in ATTACK_KINDS.items()}
    kind = by_paper_name.get(attack, attack) if isinstance(attack, str) else attack
    v.check_choice(kind, "attack", ATTACK_KINDS)
    attack_name = ATTACK_KINDS[kind]
    if n is not None:
        n = v.check_int_at_least(n, "n", 1)
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    if not isinstance(resume, bool):
        raise TypeError(f"`resume` must be a bool, got {resume!r}")
    if input_size is not None:
        if isinstance(input_size, (str, bytes)) or len(tuple(input_size)) != 2:
            raise ValueError(f"`input_size` must be (height, width), got {input_size!r}")
        input_size = (
            v.check_int_at_least(input_size[0], "input_size[0]", 1),
            v.check_int_at_least(input_size[1], "input_size[1]", 1),
        )
    preset = apply_overrides(IMAGENET_QUICK if quick else presets_lib.IMAGENET, overrides)
    attack_preset = preset.attacks[attack_name]
    if epsilons is not None:
        if attack_preset.epsilons is None:
            raise ValueError(f"{attack_name} minimizes the distortion: it takes no `epsilons`")
        eps_values = epsilons if isinstance(epsilons, (list, tuple)) else [epsilons]
        eps_values = [float(e) for e in eps_values]
        if not eps_values or any(not np.isfinite(e) or e <= 0 for e in eps_values):
            raise ValueError(f"`epsilons` must be finite numbers > 0, got {epsilons!r}")
        attack_preset = attack_preset.replace(
            epsilons=eps_values[0] if len(eps_values) == 1 else tuple(eps_values)
        )
    if not pathlib.Path(images_dir).is_dir():
        raise FileNotFoundError(f"image directory {os.fspath(images_dir)!r} not found")

    if isinstance(model, Model):
        net, model_name = model, model.name
        if input_size is not None and net.input_size not in (None, input_size):
            raise ValueError(
                f"model {net.name!r} takes images of size {net.input_size}, got "
                f"input_size={input_size}"
            )
    elif isinstance(model, (str, os.PathLike)):
        model_name, net = load_imagenet_model(
            model,
            cache_dir=cache_dir,
            input_size=input_size,
            preprocessing=preprocessing,
            align_labels=False,
        )
    else:
        raise TypeError(
            f"`model` must be a tfsmooth Model or a path / model name, got {type(model).__name__}"
        )
    size = net.input_size or input_size
    folder = load_image_folder(images_dir, size=size, limit=n)
    images, file_names = folder.images, folder.file_names
    n0 = images.shape[0]
    if size is None:
        logger.info("attacking the images at their own size %s", images.shape[1:3])

    if isinstance(labels, str) and labels == "predicted":
        labels_np = net.predict(images, batch_size).numpy().astype(np.int64)
        labels_source = "predicted (the model's own predictions on the clean images)"
    elif isinstance(labels, (str, os.PathLike)):
        num_classes = int(net(images[:1]).shape[-1])
        labels_np = load_labels_csv(labels, file_names, num_classes)
        labels_source = f"CSV {os.fspath(labels)}"
    else:
        labels_np = np.asarray(labels)
        if labels_np.shape != (n0,) or not np.issubdtype(labels_np.dtype, np.integer):
            raise ValueError(f"`labels` must be integers of shape ({n0},), got {labels_np.shape}")
        labels_np = labels_np.astype(np.int64)
        labels_source = "given"

    attack_obj, eps = attack_preset.build()
    eps_list = eps if isinstance(eps, list) else [eps]
    stems = _output_stems(file_names)
    header = {
        "format": RECORDS_FORMAT,
        "model": model_name,
        "model_fingerprint": model_fingerprint(net),
        "attack": attack_name,
        "attack_config": repr(attack_obj),
        "epsilons": eps,
        "batch_size": batch_size,
        "n_images": int(n0),
        "data_fingerprint": data_fingerprint(images, labels_np),
        "files": file_names,
        "labels": labels_source,
    }
    run = {
        "experiment": "attack",
        "model": model_name,
        "attack": attack_name,
        "images": os.fspath(images_dir),
        "n_images": int(n0),
        "image_size": list(images.shape[1:3]),
        "epsilons": eps,
        "labels": labels_source,
        "quick": bool(quick),
        "overrides": overrides or {},
        "batch_size": batch_size,
    }
    outputs = ["records.jsonl", "summary.json"]
    outputs += [f"{kind}/{stem}.png" for kind in ("adversarial", "perturbation") for stem in stems]
    run_dir = OutputDir(
        out_dir,
        run=run,
        outputs=outputs,
        subdirs=["adversarial", "perturbation"],
        resume=resume,
        overwrite=overwrite,
    )
    with run_dir:
        out = run_dir.path
        records_path = out / "records.jsonl"
        store = RecordFile(
            records_path, header, identity=list(header), resume=resume, overwrite=overwrite
        )
        with store:
            lost = [
                index
                for index, record in store.records.items()
                if any(
                    record.get(k) is not None and not (out / record[k]).is_file()
                    for k in ("adversarial", "perturbation")
                )
            ]
            if lost:
                logger.warning(
                    "%s: the PNGs of %d recorded image(s) are missing: attacking them again",
                    records_path,
                    len(lost),
                )
                store.discard(lost)
            report = _make_progress(progress, n0)
            # fixed batches, every attack call padded to the same size: one trace of the
            # compiled attack loop, and a resumed run attacks the same batches as an
            # uninterrupted one (C&W decides its early abort per batch)
            size_b = min(batch_size, n0)
            for batch in store.batches(batch_size):
                if batch.missing.size:
                    batch_started = time.perf_counter()
                    new = _attack_files(
                        net,
                        attack_obj,
                        images,
                        labels_np,
                        batch.indices,
                        batch.missing,
                        size_b,
                        eps,
                        eps_list,
                        out,
                        stems,
                    )
                    seconds = (time.perf_counter() - batch_started) / batch.indices.size
                    for record in new:
                        record.update(
                            model=model_name,
                            attack=attack_name,
                            seconds=seconds,
                            file=file_names[record["index"]],
                        )
                    store.append(new, batch=batch.id)
                if report:
                    report(len(store.records))
        records = store.records

        result = EvaluationResult.from_records(
            list(records.values()), n0=n0, model=model_name, attack=attack_name
        )
        row = result.to_row()
        ordered = [records[i] for i in range(n0)]
        row["png_success"] = int(sum(bool(r.get("png_success")) for r in ordered))
        meta = {
            "experiment": "attack",
            "data_source": os.fspath(images_dir),
            "n_test_images": int(n0),
            "image_size": list(images.shape[1:3]),
            "clean_accuracy": {model_name: result.clean_accuracy},
            "labels": labels_source,
            "version": __version__,
            "quick": bool(quick),
            "attack": attack_preset.to_dict(),
            "overrides": overrides or {},
            "batch_size": batch_size,
        }
        files = {
            "summary": str(report_lib.write_results(out / "summary.json", [row], meta)),
            "records": str(records_path),
            "adversarial": str(out / "adversarial"),
            "perturbation": str(out / "perturbation"),
        }
    return {
        "row": row,
        "records": ordered,
        "meta": meta,
        "files": files,
        "seconds": time.perf_counter() - started,
    }


def _attack_files(
    net: Model,
    attack: Attack,
    images: np.ndarray,
    labels: np.ndarray,
    idx: np.ndarray,
    write: np.ndarray,
    size: int,
    eps: Any,
    eps_list: list[Any],
    out: pathlib.Path,
    stems: list[str],
) -> list[dict[str, Any]]:
    """Attacks the images ``idx`` (a whole batch, padded to ``size``), returns their records.

    The PNGs are written for the images of ``write`` only (those without a record yet): the
    images already recorded keep their files.
    """
    clean = net.predict(images[idx], size).numpy()
    correct = clean == labels[idx]
    records = []
    attacked = idx[correct]
    chosen: dict[int, dict[str, Any]] = {}
    if attacked.size:
        pad = np.concatenate([attacked, np.repeat(attacked[-1:], max(size - attacked.size, 0))])
        x = tf.constant(images[pad])
        y = tf.constant(labels[pad])
        result = attack(net, x, y, epsilons=eps)
        clipped = result.clipped if isinstance(result.clipped, list) else [result.clipped]
        adversarials = np.stack([np.asarray(c) for c in clipped])[:, : attacked.size]
        delta = adversarials - images[attacked][None]
        flat = delta.reshape(len(clipped), attacked.size, -1)
        l2 = np.linalg.norm(flat, axis=-1)
        linf = np.abs(flat).max(axis=-1)
        success = np.asarray(result.success)[:, : attacked.size]
        ok, distance, best = metrics.combine_multi_epsilon(success, l2, return_index=True)
        k_of = np.where(ok, best, len(eps_list) - 1)
        chosen_adv = adversarials[k_of, np.arange(attacked.size)]
        adv_label = net.predict(chosen_adv, size).numpy()
        quantized = np.round(chosen_adv * 255.0) / 255.0
        png_label = net.predict(quantized.astype(np.float32), size).numpy()
        wanted = {int(i) for i in write}
        for j, index in enumerate(attacked):
            index = int(index)
            k = int(k_of[j])
            record: dict[str, Any] = {
                "success": bool(ok[j]),
                "l2": _json_float(distance[j]) if ok[j] else None,
                "linf": _json_float(linf[k, j]) if ok[j] else None,
                "best_epsilon": None if (not ok[j] or eps_list[k] is None) else float(eps_list[k]),
                "adv_label": int(adv_label[j]),
                "png_success": bool(png_label[j] != labels[index]) if ok[j] else False,
                "adversarial": None,
                "perturbation": None,
            }
            if ok[j] and index in wanted:
                adv_file = f"adversarial/{stems[index]}.png"
                pert_file = f"perturbation/{stems[index]}.png"
                save_png(chosen_adv[j], out / adv_file)
                save_png(_display_perturbation(delta[k, j]), out / pert_file)
                record.update(adversarial=adv_file, perturbation=pert_file)
            chosen[index] = record
    for j, index in enumerate(idx):
        index = int(index)
        record = {
            "index": index,
            "label": int(labels[index]),
            "correct": bool(correct[j]),
            "clean_label": int(clean[j]),
            "success": False,
            "l2": None,
            "linf": None,
            "best_epsilon": None,
            "adv_label": int(clean[j]),
            "png_success": False,
            "adversarial": None,
            "perturbation": None,
        }
        record.update(chosen.get(index, {}))
        records.append(record)
    return records
