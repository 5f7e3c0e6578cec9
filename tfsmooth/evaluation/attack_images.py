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
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfsmooth import _validation as v
from tfsmooth._io import OutputDir, save_png
from tfsmooth._version import __version__
from tfsmooth.data.folder import load_labels_csv
from tfsmooth.evaluation import presets as presets_lib
from tfsmooth.evaluation import report as report_lib
from tfsmooth.evaluation.driver import safe_name
from tfsmooth.evaluation.presets import apply_overrides
from tfsmooth.evaluation.protocol import Annotate, evaluate_attack
from tfsmooth.evaluation.records import read_records
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
    strategy: Any = None,
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
        strategy: optional ``tf.distribute.Strategy`` (e.g. ``MirroredStrategy``): each batch
            is split over its devices (as :func:`~tfsmooth.evaluation.evaluate_attack`), the
            same results as without.

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
    stems = _output_stems(file_names)
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
        result = evaluate_attack(
            net,
            attack_obj,
            images,
            labels_np,
            epsilons=eps,
            batch_size=batch_size,
            records_path=records_path,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            strategy=strategy,
            attack_name=attack_name,
            model_name=model_name,
            header={"files": file_names, "labels": labels_source},
            annotate=_png_writer(net, out, stems, file_names, min(batch_size, n0)),
            keep=lambda record: _pngs_exist(out, record),
        )
        _, on_disk, _ = read_records(records_path)
        by_index = {int(r["index"]): r for r in on_disk}
        ordered = [by_index[i] for i in range(n0)]
        row = result.to_row()
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


def _pngs_exist(out: pathlib.Path, record: Mapping[str, Any]) -> bool:
    """Whether the PNGs a record names are there (a resumed run attacks the others again)."""
    return all(
        record.get(key) is None or (out / record[key]).is_file()
        for key in ("adversarial", "perturbation")
    )


def _png_writer(
    net: Model, out: pathlib.Path, stems: list[str], file_names: list[str], size: int
) -> Annotate:
    """The ``annotate`` hook of :func:`evaluate_attack` that makes ``tfsmooth attack``'s records.

    For the new records of a batch (the images not recorded yet): writes the adversarial and
    perturbation PNGs of each success and adds ``file``, ``png_success`` (the adversarial
    rounded to 8 bits still fools the model), ``adversarial`` and ``perturbation`` (the PNGs'
    paths in ``out``, ``None`` where no success).
    """

    def annotate(records: list[dict[str, Any]], clean: np.ndarray, adversarial: np.ndarray) -> None:
        fooled = [j for j, record in enumerate(records) if record["success"]]
        png_label = np.zeros([len(records)], np.int64)
        if fooled:
            quantized = np.round(adversarial[fooled] * 255.0) / 255.0
            png_label[fooled] = net.predict(quantized.astype(np.float32), size).numpy()
        for j, record in enumerate(records):
            index = int(record["index"])
            record.update(
                file=file_names[index],
                png_success=False,
                adversarial=None,
                perturbation=None,
            )
            if record["success"]:
                adv_file = f"adversarial/{stems[index]}.png"
                pert_file = f"perturbation/{stems[index]}.png"
                save_png(adversarial[j], out / adv_file)
                save_png(_display_perturbation(adversarial[j] - clean[j]), out / pert_file)
                record.update(
                    png_success=bool(png_label[j] != record["label"]),
                    adversarial=adv_file,
                    perturbation=pert_file,
                )

    return annotate
