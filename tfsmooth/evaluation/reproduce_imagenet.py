"""Reproduction of the paper's ImageNet experiments (Table 1–3, Fig. 1), on real photos too.

:func:`reproduce_imagenet` runs the six attacks in two settings:

- **real photos, offline** (the default): the 20 labelled ImageNet photos shipped with foolbox
  (:func:`~tfsmooth.data.samples.load_samples`) against EfficientNet-Lite0/1/2 with real
  ImageNet weights (:mod:`tfsmooth.models.efficientnet`), with
  :data:`~tfsmooth.evaluation.presets.IMAGENET_PHOTOS` (a C&W / sC&W that converges, and every
  adversarial counted only if it survives an 8-bit PNG). Each row carries the perceptual
  measures of its adversarials (:mod:`tfsmooth.evaluation.visual`: PSNR, SSIM, Dirichlet energy,
  total variation, visibility under magnification, PNG round trip); the report checks the
  paper's findings (:data:`IMAGENET_FINDINGS`), discusses the units of the paper's D, and draws
  Fig. 1 on the photos (``magnified.png``);
- **the paper's protocol** on the NIPS 2017 dev set (:func:`~tfsmooth.data.load_nips17`) with
  :data:`~tfsmooth.evaluation.presets.IMAGENET` against InceptionV3 or ResNetV2-50 from TF-Hub
  (Table 1, found offline in the TF-Hub cache) or any SavedModel; with ``adv_checkpoint`` the
  adversarially trained InceptionV3 of Kurakin et al. (Table 2;
  :func:`~tfsmooth.models.slim.load_slim_inception_v3`); with ``defense`` / ``transfer``, the
  transferability scenario of §5.4 (Table 3): adversarials crafted on the white-box model with
  a single distortion target are fed to the model behind the bilateral filter of
  :meth:`~tfsmooth.defenses.BilateralFilter.paper` and to the adversarially trained InceptionV3.

It writes into ``out_dir``: ``records/<model>__<attack>.jsonl`` (per-image records, resumable,
:mod:`tfsmooth.evaluation.records`; ``C&W`` is spelled ``CW`` in file names),
``transfer/...jsonl`` for Table 3, ``results.json`` / ``results.csv`` (the schema of
:mod:`tfsmooth.evaluation.report`; rows carry a ``table`` key), ``report.md``, ``oc_<model>.png``
(Fig. 3) and, on photos, ``magnified.png`` and ``adversarials/`` (the adversarial PNGs). The
folder is locked while a run writes to it, and earlier results in it are never replaced unless
asked (``resume`` for the same run, ``overwrite``): see :class:`tfsmooth._io.OutputDir`.

With ``workers`` (a :class:`~tfsmooth.evaluation.distributed.WorkerSpec`, from ``TF_CONFIG`` on
the command line) the white-box runs are shared by several processes over one ``out_dir`` that
they all see, as in :func:`~tfsmooth.evaluation.reproduce.reproduce_mnist`: each worker records
its share of the fixed batches of every ``(model, attack)`` run in ``out_dir/workers/worker-<i>``
(its own locked folder) and writes the adversarial PNGs of its images (distinct names per image,
written atomically) into ``out_dir/adversarials/``; the other workers stop there, and the chief
(worker 0) merges the records and then, alone, runs what needs every image: the transfer runs
of Table 3 (crafted anew on the source model, as in one process: they never used the white-box
adversarials), the figures (Fig. 1 reads the adversarial PNGs of all workers back from
``out_dir/adversarials/``), ``results.json`` and the report
(:mod:`tfsmooth.evaluation.distributed`).

Labels: the logits are aligned with the labels of the data by
:func:`~tfsmooth.models.loading.align_labels` (photos: 0-based; NIPS 2017: 1..1000 with 0 =
background). ``tfsmooth attack`` lives in :mod:`tfsmooth.evaluation.attack_images`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pathlib
import time
from typing import Any

import numpy as np

from tfsmooth import _validation as v
from tfsmooth._version import __version__
from tfsmooth.data.folder import LABEL_COLUMNS, load_labels_csv  # noqa: F401 (re-exported)
from tfsmooth.evaluation import presets as presets_lib
from tfsmooth.evaluation import report as report_lib
from tfsmooth.evaluation.attack_images import ATTACK_KINDS, attack_images
from tfsmooth.evaluation.distributed import WorkerSpec
from tfsmooth.evaluation.driver import (
    open_run_folders,
    record_file_name,
    run_white_box,
    safe_name,
    worker_summary,
)
from tfsmooth.evaluation.driver import progress_for as _progress_fn
from tfsmooth.evaluation.presets import IMAGENET_QUICK, apply_overrides
from tfsmooth.evaluation.protocol import EvaluationResult
from tfsmooth.evaluation.transfer import evaluate_transfer
from tfsmooth.models.base import Model
from tfsmooth.models.loading import HUB_MODELS as IMAGENET_MODELS
from tfsmooth.models.loading import load_imagenet_model

logger = logging.getLogger(__name__)

__all__ = [
    "ATTACK_KINDS",
    "IMAGENET_MODELS",
    "IMAGENET_QUICK",
    "TABLE3_PAPER_RESULTS",
    "TRANSFER_EPSILONS",
    "apply_overrides",
    "attack_images",
    "imagenet_findings",
    "load_imagenet_model",
    "load_labels_csv",
    "reproduce_imagenet",
]

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


# -- helpers -------------------------------------------------------------------------------------
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


# -- transferability (Table 3) --------------------------------------------------------------------
def _transfer_path(source_name: str, targets: list[str], attack_name: str) -> str:
    """``transfer/<source>__to__<targets>__<attack>.jsonl`` (relative to the output folder)."""
    return "transfer/" + record_file_name(
        f"{source_name}__to__{'+'.join(sorted(targets))}", attack_name
    )


# -- the reproduction ----------------------------------------------------------------------------
def reproduce_imagenet(
    out_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] = "efficientnet_lite0",
    preset: str | presets_lib.Preset | None = None,
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
    workers: WorkerSpec | None = None,
) -> dict[str, Any]:
    """Runs the paper's ImageNet experiments and writes results, report and figures.

    Two settings:

    - **photos** (``data_dir=None``, the default): the 20 labelled ImageNet photos shipped with
      foolbox (:func:`~tfsmooth.data.load_samples`) against a real pretrained network that
      works offline (``model="efficientnet_lite0"``), with
      :data:`~tfsmooth.evaluation.presets.IMAGENET_PHOTOS`: a converged C&W / sC&W and every
      adversarial counted only if it survives an 8-bit PNG. Each row also carries the
      perceptual measures of the adversarials (:mod:`tfsmooth.evaluation.visual`), and the
      report has Fig. 1 on the photos and the paper's findings checked.
    - **NIPS 2017** (``data_dir`` given): the paper's protocol
      (:data:`~tfsmooth.evaluation.presets.IMAGENET`) on the dev set against the TF-Hub
      InceptionV3 / ResNetV2-50, with Tables 2 and 3 on request.

    Args:
        out_dir: output directory (created).
        data_dir: the NIPS 2017 dev set (``dev_dataset.csv`` + ``<ImageId>.png``, see
            :mod:`tfsmooth.data.nips17`), or ``None`` for the shipped sample photos.
        model: ``"efficientnet_lite0"`` / ``1`` / ``2``, ``"inception_v3"``, ``"resnet_v2_50"``
            (TF-Hub, from the TF-Hub cache), a SavedModel directory or a ``.keras`` file
            (:func:`~tfsmooth.models.loading.load_imagenet_model`; its logits are aligned with
            the labels of the data: 0-based for the photos, 1-based for NIPS 2017).
        preset: a preset or its name (:data:`~tfsmooth.evaluation.presets.PRESETS`); default
            ``"imagenet-photos"`` for the photos and ``"imagenet"`` (the paper's) for NIPS 2017,
            their ``-quick`` versions with ``quick``.
        adv_checkpoint: optional TF1-slim checkpoint of the adversarially trained InceptionV3
            (``adv_inception_v3.ckpt``, see :data:`~tfsmooth.models.slim.SLIM_CHECKPOINTS`),
            attacked too (Table 2; NIPS 2017 only).
        n: number of images (the first ``n``); ``None`` for all.
        quick: fewer iterations (the report says so).
        resume: continue the run recorded in ``out_dir`` (the same arguments; by the same
            batches); without it (or ``overwrite``), earlier results raise ``ValueError``.
        overwrite: replace the files of an earlier run (or foreign files) in ``out_dir``
            (``--overwrite``); with ``resume``, record files of the same run are continued.
        progress: ``True`` for progress bars, or a callable ``progress(model, attack, done,
            total)``.
        batch_size: images per batch.
        strategy: optional ``tf.distribute.Strategy`` for the white-box runs.
        attacks: subset of the attack names (default all six).
        overrides: ``{attack name: {key: value}}`` (see
            :func:`~tfsmooth.evaluation.presets.apply_overrides`), recorded in ``meta``.
        defense: Table 3, bilateral column: transfer the attacks crafted on ``model`` to
            ``model`` behind :meth:`~tfsmooth.defenses.BilateralFilter.paper`.
        transfer: Table 3, adversarial-training column: transfer them to the model of
            ``adv_checkpoint`` (required).
        cache_dir: TF-Hub cache directory (default ``$TFHUB_CACHE_DIR``), or the cache of the
            converted EfficientNet weights.
        figures: draw the figures (needs matplotlib; skipped if missing).
        workers: this process's :class:`~tfsmooth.evaluation.distributed.WorkerSpec` in a
            multi-worker run (``None``: a single process). Every worker is given the same
            arguments; each records its share of the white-box batches in
            ``out_dir/workers/worker-<i>`` (continued when rerun with the same arguments) and
            writes the adversarial PNGs of its images to ``out_dir/adversarials/``; the chief
            (worker 0) waits for the others, merges the records, runs the transfer (Table 3)
            and writes the results (the same as a single process's).

    Returns:
        A summary dict: ``rows`` (as in ``results.json``), ``meta``, ``table`` (markdown),
        ``files`` (paths written) and ``seconds``. A worker other than the chief returns no
        rows, a ``table`` that says so, and its own record files in ``files``.

    Raises:
        FileNotFoundError: missing data, model not in the TF-Hub cache, missing checkpoint.
        ImportError: the sample photos or the EfficientNet weights are not installed (the
            message names the package).
        ValueError: bad arguments, bad data, a model or checkpoint that cannot be used (or
            whose logits fit no ImageNet labels), an ``out_dir`` that holds earlier results
            (see ``resume`` and ``overwrite``), record files of another run.
        RunLockedError: another run writes to ``out_dir`` (an ``OSError``).

    Example:
        >>> reproduce_imagenet("/tmp/never", data_dir="/tmp/never", transfer=True)
        Traceback (most recent call last):
        ...
        ValueError: `transfer=True` needs `adv_checkpoint` (the model the attacks transfer to)
    """
    from tfsmooth.attacks.quantization import quantize_images
    from tfsmooth.data import load_nips17, load_samples
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
    if workers is not None and not isinstance(workers, WorkerSpec):
        raise TypeError(f"`workers` must be a WorkerSpec or None, got {type(workers).__name__}")
    shared = workers if workers is not None and workers.distributed else None
    if transfer and adv_checkpoint is None:
        raise ValueError(
            "`transfer=True` needs `adv_checkpoint` (the model the attacks transfer to)"
        )
    photos = data_dir is None
    if photos and adv_checkpoint is not None:
        raise ValueError(
            "`adv_checkpoint` (Table 2) needs the NIPS 2017 labels: pass `data_dir` too"
        )
    if preset is None:
        preset = ("imagenet-photos" if photos else "imagenet") + ("-quick" if quick else "")
    if isinstance(preset, str):
        preset = presets_lib.get_preset(preset)
    if not isinstance(preset, presets_lib.Preset) or preset.dataset != "imagenet":
        raise ValueError(f"`preset` must be an ImageNet preset, got {preset!r}")
    if attacks is not None:
        preset = preset.select(attacks)
    preset = apply_overrides(preset, overrides)
    built = presets_lib.build_attacks(preset)
    bits: set[int] = {
        b for attack, _ in built.values() if (b := getattr(attack, "quantize_bits", None))
    }

    main_name, main_net = load_imagenet_model(
        model, label_base=0 if photos else 1, cache_dir=cache_dir
    )
    if photos:
        data: Any = load_samples("imagenet", size=main_net.input_size or (224, 224), limit=n)
        source = f"the {len(data.labels)} ImageNet sample photos of foolbox 3.3.4"
        images, labels = data.images, data.labels
    else:
        data = load_nips17(os.fspath(data_dir or ""), limit=n)
        source = data.source
        images, labels = data.images, data.labels
        if n is not None and len(data) < n:
            raise ValueError(
                f"`n` must be at most the number of images of the data set ({len(data)} in "
                f"{data.source}), got {n}"
            )
    if bits:  # clean images as an 8-bit file holds them: the adversarials stay on that grid
        images = quantize_images(images, max(bits)).numpy()

    nets: dict[str, Model] = {main_name: main_net}
    adv_name = None
    if adv_checkpoint is not None:
        adv_net = load_slim_inception_v3(adv_checkpoint)
        adv_name = adv_net.name if adv_net.name != main_name else f"{adv_net.name}_adv"
        nets[adv_name] = adv_net
    target_names = (["bilateral"] if defense else []) + (
        [adv_name] if transfer and adv_name is not None else []
    )
    run = {
        "experiment": "imagenet",
        "data": "photos" if photos else os.fspath(data_dir or ""),
        "preset": preset.name,
        "models": list(nets),
        "attacks": list(built),
        "n_images": int(images.shape[0]),
        "quick": bool(preset.quick),
        "overrides": overrides or {},
        "batch_size": batch_size,
        "transfer_targets": target_names,
    }
    outputs = [f"records/{record_file_name(m, a)}" for m in nets for a in built]
    if target_names:
        outputs += [_transfer_path(main_name, target_names, a) for a in built]
    outputs += ["results.json", "results.csv", "report.md"]
    if figures:
        outputs += [f"oc_{safe_name(m)}.png" for m in nets]
        if photos:
            outputs += ["magnified.png"]
    subdirs = ["records", "transfer"] if target_names else ["records"]
    with contextlib.ExitStack() as stack:
        out = open_run_folders(
            stack,
            out_dir,
            run=run,
            outputs=outputs,
            subdirs=subdirs,
            record_names=[record_file_name(m, a) for m in nets for a in built],
            resume=resume,
            overwrite=overwrite,
            workers=workers,
        )

        def measure_for(model_name: str, attack_name: str, net: Model) -> Any:
            from tfsmooth.evaluation.visual import photo_measure

            return photo_measure(net, labels, out, model_name, attack_name) if photos else None

        box = run_white_box(
            out,
            nets,
            built,
            images,
            labels,
            batch_size=batch_size,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            strategy=strategy,
            measure_for=measure_for,
            extra=lambda name: {
                "table": "2" if name == adv_name else "1",
                "scenario": "white box",
            },
            workers=workers,
        )
        if shared is not None and not shared.chief:
            return worker_summary(
                shared,
                box,
                experiment="imagenet",
                source=source,
                n_images=int(images.shape[0]),
                started=started,
            )
        # From here on the chief (or the single process) alone: the merged records of every
        # image, the transfer runs, the figures (from the adversarial PNGs of all workers).
        rows, results, accuracy = box.rows, box.results, box.accuracy

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

        findings = imagenet_findings(rows) if photos else []
        meta = {
            "experiment": "imagenet",
            "data_source": source,
            "n_test_images": int(images.shape[0]),
            "image_size": list(images.shape[1:3]),
            "clean_accuracy": accuracy,
            "version": __version__,
            "quick": bool(preset.quick),
            "models": {name: repr(net) for name, net in nets.items()},
            "preset": preset.to_dict(),
            "overrides": overrides or {},
            "batch_size": batch_size,
            "quantize_bits": max(bits) if bits else None,
            "transfer": transfer_settings,
            "transfer_targets": [
                "the model behind the bilateral filter (σ 0.5 px / 0.2, Table 3 left)"
                if name == "bilateral"
                else f"{name} (adversarially trained, Table 3 right)"
                for name in targets
            ],
            "findings": findings,
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
            if photos:
                files.update(_panel(out, images, results[main_name], main_name))
        files["report"] = str(
            _write_report(out / "report.md", table_md, table3_md, meta, files, white)
        )
        seconds = time.perf_counter() - started
        return {
            "rows": rows,
            "meta": meta,
            "table": table_md + ("\n" + table3_md if table3_md else ""),
            "files": files,
            "seconds": seconds,
        }


def _panel(
    out: pathlib.Path, images: np.ndarray, results: dict[str, EvaluationResult], model: str
) -> dict[str, str]:
    """Fig. 1 on the photos: the photos every attack fooled (at most 3), magnified."""
    try:
        from tfsmooth.evaluation.visual import magnified_panel

        fooled = np.all([r.success for r in results.values()], axis=0)
        chosen = [int(i) for i in np.flatnonzero(fooled)[:3]]
        path = magnified_panel(out / "magnified.png", out, images, results, model, chosen)
    except ImportError as err:
        logger.warning("figure skipped: %s", err)
        return {}
    return {} if path is None else {"magnified": str(path)}


#: The paper's findings on ImageNet (Table 1, Fig. 1, §5.3), checked on real photos:
#: ``(description, kind, arguments)``.
IMAGENET_FINDINGS: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    ("I-FGSM, PGD2, C&W, sC&W succeed (Psuc ≥ 0.95)", "psuc_at_least", (0.95,)),
    ("D: FGSM > I-FGSM", "d_greater", ("FGSM", "I-FGSM")),
    ("D: I-FGSM > C&W", "d_greater", ("I-FGSM", "C&W")),
    ("converged C&W: D ≤ 1.0 on [0, 1] pixels", "d_at_most", ("C&W", 1.0)),
    ("converged sC&W: D ≤ 1.0 on [0, 1] pixels", "d_at_most", ("sC&W", 1.0)),
    (
        "sC&W is smoother: Dirichlet energy per unit norm < 0.5 × C&W's",
        "measure_ratio_below",
        ("dirichlet_energy", "sC&W", "C&W", 0.5),
    ),
    ("sC&W adversarials: PSNR ≥ 45 dB on average", "measure_at_least", ("psnr", "sC&W", 45.0)),
    (
        "sC&W is less visible under magnification than C&W",
        "measure_ratio_below",
        ("visibility", "sC&W", "C&W", 1.0),
    ),
    (
        "≥ 95 % of the written PNGs are still adversarial (every attack)",
        "measure_at_least_all",
        ("png_adversarial", 0.95),
    ),
)


def imagenet_findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of :data:`IMAGENET_FINDINGS` judged on the white-box rows of one model.

    Returns:
        ``[{"finding", "holds", "detail"}]``; ``holds`` is ``None`` where a row is missing.

    Example:
        >>> rows = [{"model": "m", "attack": "FGSM", "mean_l2": 9.0, "psuc": 1.0},
        ...         {"model": "m", "attack": "I-FGSM", "mean_l2": 5.0, "psuc": 1.0}]
        >>> [f["holds"] for f in imagenet_findings(rows)][:3]
        [True, True, None]
    """
    white = [r for r in rows if r.get("table", "1") == "1"]
    model = white[0]["model"] if white else None
    by_attack = {r["attack"]: r for r in white if r["model"] == model}

    def value(attack: str, key: str) -> float | None:
        row = by_attack.get(attack)
        return None if row is None or row.get(key) is None else float(row[key])

    out = []
    for text, kind, args in IMAGENET_FINDINGS:
        holds: bool | None = None
        detail = ""
        if kind == "psuc_at_least":
            found = {a: value(a, "psuc") for a in ("I-FGSM", "PGD2", "C&W", "sC&W")}
            known = {a: p for a, p in found.items() if p is not None}
            holds = all(p >= args[0] for p in known.values()) if known else None
            detail = ", ".join(f"{a} {p:.2f}" for a, p in known.items())
        elif kind == "d_greater":
            a, b = value(args[0], "mean_l2"), value(args[1], "mean_l2")
            holds = None if a is None or b is None else a > b
            detail = "" if holds is None else f"{a:.3f} vs {b:.3f}"
        elif kind == "d_at_most":
            a = value(args[0], "mean_l2")
            holds = None if a is None else a <= args[1]
            detail = "" if a is None else f"{a:.3f}"
        elif kind == "measure_ratio_below":
            key = f"mean_{args[0]}"
            a, b = value(args[1], key), value(args[2], key)
            if a is not None and b:
                holds = a / b < args[3]
                detail = f"{a:.4g} vs {b:.4g} (ratio {a / b:.2f})"
        elif kind == "measure_at_least":
            a = value(args[1], f"mean_{args[0]}")
            holds = None if a is None else a >= args[2]
            detail = "" if a is None else f"{a:.2f}"
        elif kind == "measure_at_least_all":
            found = {a: value(a, f"mean_{args[0]}") for a in by_attack}
            known = {a: x for a, x in found.items() if x is not None}
            holds = all(x >= args[1] for x in known.values()) if known else None
            detail = ", ".join(f"{a} {x:.2f}" for a, x in known.items())
        out.append({"finding": text, "holds": holds, "detail": detail})
    return out


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

    Each attack is one :func:`~tfsmooth.evaluation.transfer.evaluate_transfer` run, its
    per-image records in ``transfer/<source>__to__<targets>__<attack>.jsonl`` (a
    :class:`~tfsmooth.evaluation.records.RecordFile`, resumable like the white-box runs).
    """
    names = sorted(targets)
    rows: list[dict[str, Any]] = []
    for attack_name, attack_preset in preset.attacks.items():
        epsilon = TRANSFER_EPSILONS[attack_name]
        single = attack_preset.replace(epsilons=epsilon)
        if "stop_on_success" in single.kwargs:  # the attacker spends the whole budget
            single = single.replace(kwargs={"stop_on_success": False})
        attack, eps = single.build()
        settings[attack_name] = {"epsilon": eps, "attack": repr(attack)}
        logger.info("reproduce_imagenet: transfer %s from %s", attack_name, source_name)
        results = evaluate_transfer(
            source,
            dict(targets),
            attack,
            images,
            labels,
            epsilon=eps,
            batch_size=batch_size,
            records_path=out / _transfer_path(source_name, names, attack_name),
            resume=resume,
            overwrite=overwrite,
            progress=_progress_fn(progress, f"{source_name}->{'+'.join(names)}", attack_name),
            source_name=source_name,
            attack_name=attack_name,
        )
        assert isinstance(results, dict)  # a dict of targets gives a dict of results
        for target in names:
            rows.append(
                {
                    "model": f"{source_name}->{target}",
                    "attack": attack_name,
                    **results[target].to_row(),
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
            path = out / f"oc_{safe_name(model_name)}.png"
            plot.plot_operating_characteristics(
                by_attack, path, title=f"Operating characteristics, ImageNet, {model_name}"
            )
            files[f"oc_{model_name}"] = str(path)
    except ImportError as err:
        logger.warning("figures skipped: %s", err)
    return files


def _write_report(
    path: pathlib.Path,
    table: str,
    table3: str,
    meta: dict[str, Any],
    files: dict[str, str],
    white: list[dict[str, Any]],
) -> pathlib.Path:
    photos = bool(meta.get("findings"))
    lines = report_lib.report_preamble(
        "ImageNet reproduction of *Smooth Adversarial Examples* (Tables 1–3)",
        f"{meta['data_source']}, {meta['n_test_images']} images of "
        f"{meta['image_size'][0]}x{meta['image_size'][1]} (the paper uses all 1,000 of the NIPS "
        "2017 dev set at 299x299); paper's clean accuracy: InceptionV3 0.96, ResNetV2-50 0.93",
        meta,
    )
    if meta["overrides"]:
        lines.append(f"- overrides: `{json.dumps(meta['overrides'])}`")
    if meta.get("quantize_bits"):
        lines.append(
            f"- every attack counts an example as adversarial only if it stays adversarial "
            f"rounded to {meta['quantize_bits']} bits (what a PNG delivers); the clean images "
            "are rounded the same way"
        )
    lines += [
        "",
        "## White box (Tables 1 and 2)",
        "",
        "Psuc = N_suc / N over the correctly classified images; D = mean L2 distortion over the "
        "successes (pixels in [0, 1]). "
        + (
            "The paper's columns are its InceptionV3 numbers (Table 1): another network, "
            "other images, other sizes."
            if photos
            else "`inception_v3` and `resnet_v2_50` are Table 1 (ImageNet columns), "
            "`adv_inception_v3` Table 2."
        ),
        "",
        table,
    ]
    if photos:
        lines += _photo_sections(meta, white)
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
    lines += report_lib.figure_line(files, lambda k: k.startswith("oc_") or k == "magnified")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _photo_sections(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Invisibility table, units of D, and the findings, for the photos report."""
    height, width = meta["image_size"]
    n_values = height * width * 3
    fmt = report_lib._fmt
    lines = [
        "",
        "## Invisibility",
        "",
        "Means over the successful adversarials (`tfsmooth.metrics`): PSNR (dB); SSIM on luma; "
        "Dirichlet energy of the perturbation per unit norm on the clean image's graph (the "
        "paper's smoothness: lower is smoother, 2 is a checkerboard); total variation of the "
        "perturbation; visibility = ‖mag(x_a) − mag(x_o)‖ / ‖mag(x_o)‖ under the adversarial "
        "magnification of Appendix A; PNG = share of the adversarials, written as 8-bit PNG "
        "and read back, that still fool the model. D_rms = root mean square of the "
        "perturbation per pixel and channel, in grey levels (0..255).",
        "",
        "| attack | Psuc | D | D_rms | PSNR | SSIM | energy | TV | visibility | PNG |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d = row.get("mean_l2")
        d_rms = None if d is None else 255.0 * d / math.sqrt(n_values)
        lines.append(
            f"| {row['attack']} | {fmt(row['psuc'], 2)} | {fmt(d, 3)} | {fmt(d_rms, 2)} | "
            f"{fmt(row.get('mean_psnr'), 1)} | {fmt(row.get('mean_ssim_luma'), 4)} | "
            f"{fmt(row.get('mean_dirichlet_energy'), 4)} | {fmt(row.get('mean_total_variation'), 1)} | "
            f"{fmt(row.get('mean_visibility'), 4)} | {fmt(row.get('mean_png_adversarial'), 2)} |"
        )
    by_attack = {r["attack"]: r for r in rows}
    paper = presets_lib.PAPER_RESULTS["imagenet"]["inception_v3"]
    paper_n = 299 * 299 * 3
    lines += ["", "## The units of the paper's D", ""]
    ratios = []
    for attack in ("FGSM", "I-FGSM"):
        ours = (by_attack.get(attack) or {}).get("mean_l2")
        if ours:
            at_299 = ours * math.sqrt(paper_n / n_values)  # the same RMS on a 299x299 image
            ratios.append((attack, paper[attack][1] / at_299, at_299))
    if ratios:
        text = "; ".join(
            f"{a}: ours {d:.2f} at 299x299 (same RMS), the paper's {paper[a][1]:.2f}, ratio {r:.3f}"
            for a, r, d in ratios
        )
        lines += [
            "FGSM moves (almost) every pixel by ε = 0.1255, so its plain L2 on [0, 1] pixels at "
            f"299x299 is at most 0.1255·√(299·299·3) = {0.1255 * math.sqrt(paper_n):.1f}; the "
            f"paper reports 5.92 (InceptionV3) and 8.20 (ResNetV2-50). {text}.",
            "No change of pixel scale ([0, 1], [−1, 1], [0, 255]) or of image size turns a full "
            "ε-step into 5.92 while keeping FGSM's D at 8.20 on ResNetV2-50 for the same ε: the "
            "paper's ImageNet D is not plain L2 on any of these scales. The ratio above is the "
            "one factor that maps our FGSM / I-FGSM onto theirs; the two agree if it is "
            "nearly the same for both. We report D as plain L2 on [0, 1] pixels (as on MNIST, "
            "where the paper's numbers match ours) and D_rms beside it; comparisons of D with "
            "the paper's ImageNet column are only meaningful as orderings.",
        ]
    findings = meta.get("findings") or []
    if findings:
        lines += [
            "",
            "## The paper's findings, checked on the photos",
            "",
            "| finding | holds | measured |",
            "|---|---|---|",
        ]
        for f in findings:
            mark = {True: "yes", False: "**no**", None: "–"}[f["holds"]]
            lines.append(f"| {f['finding']} | {mark} | {f['detail']} |")
    return lines
