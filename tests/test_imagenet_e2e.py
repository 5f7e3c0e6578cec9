"""End to end, offline: a tiny SavedModel exported here, loaded like a TF-Hub classifier, attacked
with sC&W on natural photos shipped by scikit-image; and (slow) the paper's sC&W / C&W cost on
a full-size InceptionV3.

The helpers ``export_tiny_classifier``, ``install_in_hub_cache``, ``photos`` and
``make_nips17_folder`` are shared with ``tests/test_cli_imagenet.py`` and
``tests/evaluation/test_reproduce_imagenet.py``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.models.hub import hub_cache_path, load_hub_model

INCEPTION_HANDLE = "google/imagenet/inception_v3/classification/5"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
NUM_CLASSES = 1001


class TinyClassifier(tf.Module):
    """``[B, H, W, 3]`` in ``[0, 1]`` -> resize to 32x32 -> conv 3x3/2 (8) -> ReLU -> mean -> 1001.

    Exported with a ``__call__`` tf.function of any image size, like the TF-Hub classifiers.
    """

    def __init__(self, seed: int = 0, fixed_size: tuple[int, int] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32))
        self.bias = tf.Variable(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(0, 1.0, (8, NUM_CLASSES)).astype(np.float32))
        height, width = fixed_size or (None, None)
        spec = tf.TensorSpec([None, height, width, 3], tf.float32)
        self.__call__ = tf.function(self._call, input_signature=[spec])

    def _call(self, images: tf.Tensor) -> tf.Tensor:
        x = tf.image.resize(images, (32, 32))
        x = tf.nn.relu(tf.nn.conv2d(x * 2.0 - 1.0, self.kernel, 2, "SAME") + self.bias)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.dense) * 4.0


def export_tiny_classifier(path: Path, *, fixed_size: tuple[int, int] | None = None) -> Path:
    """Saves a :class:`TinyClassifier` SavedModel at ``path`` and returns ``path``."""
    tf.saved_model.save(TinyClassifier(fixed_size=fixed_size), str(path))
    return path


def install_in_hub_cache(
    saved_model: Path, cache_dir: Path, handle: str = INCEPTION_HANDLE
) -> Path:
    """Copies a SavedModel where ``tensorflow_hub`` would cache ``handle`` under ``cache_dir``."""
    import shutil

    target = hub_cache_path(handle, cache_dir)
    shutil.copytree(saved_model, target)
    return target


def photos(size: tuple[int, int]) -> np.ndarray:
    """scikit-image's astronaut, coffee, chelsea and rocket, resized: float32 ``[4, H, W, 3]``."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    out = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage_data, name)())
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out.append(np.asarray(image, np.float32) / 255.0)
    return np.stack(out)


def save_photos(directory: Path, size: tuple[int, int]) -> list[str]:
    """The four photos as PNGs ``<name>.png`` in ``directory``; returns the file names."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for name, image in zip(PHOTOS, photos(size)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(directory / f"{name}.png")
        names.append(f"{name}.png")
    return names


def make_nips17_folder(directory: Path, model_path: Path) -> np.ndarray:
    """A NIPS 2017 dev-set folder of the four photos at 299x299, labelled by the tiny model.

    ``TrueLabel`` is the model's own prediction (1..1000) on the PNG as it will be read back, so
    every image is classified correctly. Returns the labels.
    """
    from tfsmooth.data import load_nips17

    ids = [f"{i:016x}" for i in range(1, len(PHOTOS) + 1)]
    directory.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for image_id, image in zip(ids, photos((299, 299))):
        pixels = np.round(image * 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"{image_id}.png")
    model = load_hub_model(model_path)
    with open(directory / "dev_dataset.csv", "w", newline="") as handle:  # provisional labels
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "URL", "TrueLabel", "TargetClass"])
        writer.writerows([image_id, "", 1, 2] for image_id in ids)
    images = load_nips17(directory).images
    predicted = model.predict(images).numpy()
    labels = np.where((predicted >= 1) & (predicted <= 1000), predicted, 1)
    with open(directory / "dev_dataset.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "URL", "TrueLabel", "TargetClass"])
        writer.writerows(
            [image_id, f"https://example.org/{image_id}", int(label), int(label % 1000) + 1]
            for image_id, label in zip(ids, labels)
        )
    return labels


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_classifier(tmp_path_factory.mktemp("tiny") / "tiny_classifier")


def test_hub_loader_by_path_and_cache_give_the_same_logits(tiny_model, tmp_path, monkeypatch):
    images = photos((64, 64))
    by_path = load_hub_model(tiny_model)
    assert by_path.input_size is None and by_path.num_classes == NUM_CLASSES
    cache = tmp_path / "cache"
    install_in_hub_cache(tiny_model, cache)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    by_handle = load_hub_model(INCEPTION_HANDLE)
    assert by_handle.input_size == (299, 299)  # the known model's size: images are resized
    direct = TinyClassifier()._call(tf.constant(images)).numpy()
    np.testing.assert_allclose(by_path(images).numpy(), direct, rtol=1e-5, atol=1e-4)
    resized = tf.image.resize(images, (299, 299)).numpy()
    np.testing.assert_allclose(
        by_handle(images).numpy(), TinyClassifier()._call(resized).numpy(), rtol=1e-4, atol=1e-3
    )


def test_smooth_cw_on_photos_through_the_hub_loader(tiny_model):
    from tfsmooth.attacks import SmoothCarliniWagnerL2
    from tfsmooth.smoothing import Smoother

    model = load_hub_model(tiny_model)
    images = photos((64, 64))
    labels = model.predict(images).numpy()
    attack = SmoothCarliniWagnerL2.imagenet(
        binary_search_steps=1, steps=30, smoother=Smoother(0.997, solver="cg", max_iter=50)
    )
    raw, clipped, success = attack(model, images, labels)
    adversarial = clipped.numpy()
    assert adversarial.shape == images.shape and adversarial.dtype == np.float32
    assert np.all(np.isfinite(adversarial))
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert bool(np.all(success.numpy()))
    predicted = model.predict(adversarial).numpy()
    assert np.all(predicted != labels)
    distortion = np.linalg.norm((adversarial - images).reshape(4, -1), axis=1)
    assert np.all(distortion > 0) and np.all(distortion < 10.0)
    # The perturbation is smooth like the photo: it varies less across neighbouring pixels
    # than a white perturbation of the same norm would.
    delta = adversarial - images
    rough = np.abs(np.diff(delta, axis=1)).mean() / np.abs(delta).mean()
    assert rough < 1.0


# -- the paper's cost on a full-size InceptionV3 -------------------------------------------------
def benchmark_inception_v3(
    batch_size: int = 2, steps: int = 10, max_iter: int = 50, seed: int = 0
) -> dict[str, float]:
    """Times C&W and sC&W (α = 0.997, ``max_iter`` CG iterations) on a random InceptionV3.

    ``keras.applications.InceptionV3(weights=None)`` at 299x299, ``batch_size`` photos, one
    binary-search round of ``steps`` Adam steps without early abort, after a warm-up call that
    compiles the loops. Returns seconds per image of each and their ratio (and the images).
    """
    import keras

    from tfsmooth.attacks import L2CarliniWagnerAttack, SmoothCarliniWagnerL2
    from tfsmooth.models import Model
    from tfsmooth.smoothing import Smoother

    keras.utils.set_random_seed(seed)
    network = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    model = Model(network, preprocessing="tf", name="inception_v3_random")
    images = photos((299, 299))[:batch_size]
    labels = model.predict(images).numpy()
    common = {
        "binary_search_steps": 1,
        "steps": steps,
        "learning_rate": 0.1,
        "confidence": 0.0,
        "initial_const": 100.0,
        "abort_early": False,
    }
    attacks = {
        "C&W": L2CarliniWagnerAttack(parametrization="tanh", **common),
        "sC&W": SmoothCarliniWagnerL2(
            parametrization="clip",
            smoother=Smoother(0.997, solver="cg", max_iter=max_iter, tol=0.0),
            **common,
        ),
    }
    timings: dict[str, float] = {}
    outputs = {}
    for name, attack in attacks.items():
        attack(model, images, labels)  # compile
        started = time.perf_counter()
        result = attack(model, images, labels)
        outputs[name] = result.clipped.numpy()
        timings[name] = (time.perf_counter() - started) / batch_size
    return {
        "seconds_per_image_cw": timings["C&W"],
        "seconds_per_image_scw": timings["sC&W"],
        "ratio_scw_over_cw": timings["sC&W"] / timings["C&W"],
        "steps": steps,
        "images": images,
        "adversarial_cw": outputs["C&W"],
        "adversarial_scw": outputs["sC&W"],
    }


@pytest.mark.slow
def test_inception_v3_cw_and_scw_cost():
    result = benchmark_inception_v3(batch_size=2, steps=10, max_iter=50)
    print(
        f"\nInceptionV3 (random weights) 299x299, batch 2, {result['steps']} Adam steps: "
        f"C&W {result['seconds_per_image_cw']:.2f} s/image, sC&W (alpha 0.997, 50 CG) "
        f"{result['seconds_per_image_scw']:.2f} s/image, ratio sC&W/C&W "
        f"{result['ratio_scw_over_cw']:.2f}"
    )
    assert np.isfinite(result["ratio_scw_over_cw"]) and result["ratio_scw_over_cw"] > 0
    for key in ("adversarial_cw", "adversarial_scw"):
        adversarial = result[key]
        assert adversarial.shape == result["images"].shape
        assert np.all(np.isfinite(adversarial))
        assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0


def test_gradient_attacks_on_one_image_of_a_hub_model(tiny_model):
    """A SavedModel's traced function loses the static batch size; the attack loops keep their
    shapes (a regression: batches of one image used to fail)."""
    from tfsmooth.attacks import L2ProjectedGradientDescentAttack, LinfBasicIterativeAttack

    model = load_hub_model(tiny_model)
    images = tf.constant(photos((48, 48)))
    model(images[:2])
    model(images[:3])
    labels = model.predict(images)
    for attack in (
        LinfBasicIterativeAttack(steps=2, step_size=0.01),
        L2ProjectedGradientDescentAttack(steps=2, stop_on_success=True),
    ):
        result = attack(model, images[:1], labels[:1], epsilons=0.05)
        assert result.success.shape == (1, 1)
