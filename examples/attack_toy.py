"""Every attack of tfsmooth, plain and smooth, on a tiny random Keras model (runs in seconds).

The images are 32x32 crops of scikit-image's ``camera`` photo (or synthetic blobs when
scikit-image is missing); the "true" labels are the model's own predictions, so every image
starts correctly classified. The script prints, per attack, the success rate and the mean L2
distortion of the successful examples, and the graph smoothness of the perturbations.

    python examples/attack_toy.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfsmooth.attacks import (  # noqa: E402
    L2CarliniWagnerAttack,
    L2FastGradientAttack,
    L2ProjectedGradientDescentAttack,
    LinfBasicIterativeAttack,
    LinfFastGradientAttack,
    SmoothCarliniWagnerL2,
    SmoothL2PGD,
    l2,
)
from tfsmooth.smoothing import Smoother  # noqa: E402

SIZE, BATCH = 32, 8


def load_images() -> np.ndarray:
    try:
        from skimage import data, transform

        photo = transform.resize(data.camera(), (128, 128), anti_aliasing=True)
        crops = [photo[r : r + SIZE, c : c + SIZE] for r in (16, 48, 80) for c in (16, 48, 80)]
        images = np.stack(crops[:BATCH])[..., None]
    except ImportError:  # synthetic: a bright rectangle on a dark background
        rng = np.random.default_rng(0)
        images = np.full((BATCH, SIZE, SIZE, 1), 0.3)
        for img in images:
            r, c = rng.integers(0, SIZE // 2, size=2)
            img[r : r + SIZE // 2, c : c + SIZE // 2] = 0.7
    return images.astype(np.float32)


def smoothness(images: tf.Tensor, adversarial: tf.Tensor) -> float:
    """Median of r' (I - D^-1/2 W D^-1/2) r / |r|^2 over the batch (0 = as smooth as can be)."""
    from tfsmooth.graphs import ImageGraph

    graph = ImageGraph(images)
    r = (adversarial - images).numpy().reshape(BATCH, -1)
    values = []
    for i in range(BATCH):
        w = graph.to_scipy(i, normalized=True)
        if np.sum(r[i] ** 2) > 0:
            values.append(1.0 - r[i] @ (w @ r[i]) / np.sum(r[i] ** 2))
    return float(np.median(values)) if values else float("nan")


def main() -> None:
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input([SIZE, SIZE, 1]),
            keras.layers.Conv2D(16, 5, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    images = tf.constant(load_images())
    labels = tf.argmax(net(images), axis=1)
    smoother = Smoother(0.95, solver="exact")
    cw = {"binary_search_steps": 3, "steps": 100, "learning_rate": 0.1, "confidence": 0.0}
    attacks = {
        "FGSM": (LinfFastGradientAttack(), [0.05, 0.1, 0.3]),
        "sFGSM": (LinfFastGradientAttack(smoother=smoother), [0.05, 0.1, 0.3]),
        "L2 FGM": (L2FastGradientAttack(), [1.0, 2.0, 4.0]),
        "I-FGSM": (LinfBasicIterativeAttack(steps=10, step_size=0.02), [0.05, 0.1, 0.3]),
        "PGD2": (L2ProjectedGradientDescentAttack(steps=20, rel_stepsize=0.1), [1.0, 2.0, 4.0]),
        "sPGD2": (SmoothL2PGD(steps=20, rel_stepsize=0.1, smoother=smoother), [1.0, 2.0, 4.0]),
        "C&W": (L2CarliniWagnerAttack(initial_const=1.0, **cw), None),
        "sC&W": (SmoothCarliniWagnerL2(initial_const=1.0, smoother=smoother, **cw), None),
    }
    print(f"{'attack':8s} {'Psuc':>5s} {'D':>6s} {'energy':>7s} {'time':>6s}")
    for name, (attack, epsilons) in attacks.items():
        start = time.perf_counter()
        _, clipped, success = attack(net, images, labels, epsilons=epsilons)
        elapsed = time.perf_counter() - start
        clipped = clipped if isinstance(clipped, list) else [clipped]
        # distortion-targeting attacks: success if any epsilon succeeds, D = the smallest
        dist = np.stack([l2(images, c).numpy() for c in clipped])
        dist = np.where(success.numpy(), dist, np.inf)
        best = dist.argmin(axis=0)
        ok = np.isfinite(dist.min(axis=0))
        chosen = tf.stack([clipped[k][i] for i, k in enumerate(best)])
        mean_d = dist.min(axis=0)[ok].mean() if ok.any() else float("nan")
        energy = smoothness(images, chosen)
        print(f"{name:8s} {ok.mean():5.2f} {mean_d:6.2f} {energy:7.3f} {elapsed:5.1f}s")


if __name__ == "__main__":
    main()
