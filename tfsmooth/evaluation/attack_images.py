"""``tfsmooth attack``: a user's own model against a folder of the user's own images.

:func:`attack_images` attacks every image of a folder with one attack of a preset (by default
:data:`~tfsmooth.evaluation.presets.IMAGENET_PHOTOS`: a converged C&W / sC&W, adversarials that
survive an 8-bit PNG) and writes the adversarial and perturbation PNGs, per-image JSONL records
(resumable by the same fixed batches, :class:`~tfsmooth.evaluation.records.RecordFile`) and a
summary.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth._io import OutputDir, save_png
from tfsmooth._version import __version__
from tfsmooth.attacks.base import Attack
from tfsmooth.data.folder import load_labels_csv
from tfsmooth.evaluation import metrics
from tfsmooth.evaluation import presets as presets_lib
from tfsmooth.evaluation import report as report_lib
from tfsmooth.evaluation.driver import safe_name
from tfsmooth.evaluation.presets import apply_overrides
from tfsmooth.evaluation.protocol import EvaluationResult, _json_float, _make_progress
from tfsmooth.evaluation.records import (
    RECORDS_FORMAT,
    RecordFile,
    data_fingerprint,
    model_fingerprint,
)
from tfsmooth.models.base import Model
from tfsmooth.models.loading import load_imagenet_model

logger = logging.getLogger(__name__)

__all__ = ["ATTACK_KINDS", "attack_images"]

#: ``tfsmooth attack --attack`` names and the paper's attack names.
ATTACK_KINDS = {
    "fgsm": "FGSM",
    "ifgsm": "I-FGSM",
    "pgd2": "PGD2",
    "cw": "C&W",
    "spgd2": "sPGD2",
    "scw": "sC&W",
}


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
        return [safe_name(name) for name in file_names]
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
    preset: str | presets_lib.Preset | None = None,
) -> dict[str, Any]:
    """Attacks a folder of images with one attack of a preset; writes PNGs and records.

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
        quick: the ``-quick`` version of the preset (fewer iterations).
        overrides: ``{attack name: {key: value}}`` (see :func:`apply_overrides`).
        progress: ``True`` for a progress bar, or a callable ``progress(done, total)``.
        cache_dir: TF-Hub cache directory for named models (or the cache of the converted
            EfficientNet weights).
        preset: a preset or its name (default ``"imagenet-photos"``: a converged C&W / sC&W,
            and adversarials counted only if they survive rounding to 8 bits, so every PNG
            written is adversarial; ``"imagenet"``: the paper's settings). With a preset that
            rounds (``quantize_bits``), the clean images are rounded to that grid first.

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
    if preset is None:
        preset = "imagenet-photos"
    if isinstance(preset, str):
        preset = presets_lib.get_preset(
            preset + ("-quick" if quick and "quick" not in preset else "")
        )
    if not isinstance(preset, presets_lib.Preset) or preset.dataset != "imagenet":
        raise ValueError(f"`preset` must be an ImageNet preset, got {preset!r}")
    preset = apply_overrides(preset.select([attack_name]), overrides)
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
            align=False,
        )
    else:
        raise TypeError(
            f"`model` must be a tfsmooth Model or a path / model name, got {type(model).__name__}"
        )
    size = net.input_size or input_size
    folder = load_image_folder(images_dir, size=size, limit=n)
    images, file_names = folder.images, folder.file_names
    bits = attack_preset.kwargs.get("quantize_bits")
    if bits:  # as an 8-bit file holds them: the adversarials stay on that grid
        from tfsmooth.attacks.quantization import quantize_images

        images = quantize_images(images, bits).numpy()
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
        "preset": preset.name,
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
