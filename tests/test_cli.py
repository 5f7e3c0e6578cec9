"""The command line interface: demo output, errors without tracebacks."""

import json

import numpy as np
import pytest
from PIL import Image

from tfsmooth.cli import main


def test_demo_writes_pngs_and_json(tmp_path, capsys):
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    pixels = np.kron(rng.integers(0, 255, (6, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    status = main(
        ["demo", "--out", str(out), "--image", str(image), "--alpha", "0.99", "--max-iter", "60"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "60 CG iterations" in printed
    record = json.loads((out / "demo.json").read_text())
    for name in ("input", "noise", "smooth", "input+smooth", "magnified input+noise", "panel"):
        with Image.open(record["files"][name]) as png:
            assert png.size[1] in (48, 96)
    # The smooth perturbation is piecewise flat on the 8x8 blocks of the guide, the noise is not.
    smooth = np.asarray(Image.open(out / "smooth.png"), float)
    noise = np.asarray(Image.open(out / "noise.png"), float)
    inner = (slice(2, 6), slice(2, 6))
    assert smooth[inner].std(axis=(0, 1)).mean() < 0.4 * noise[inner].std(axis=(0, 1)).mean()


def test_demo_with_shipped_photo(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--max-iter", "5"]) == 0
    assert (tmp_path / "panel.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--image", "/no/such.png"], "does not exist"),
        (["demo", "--alpha", "1.5"], "alpha"),
        (["demo", "--max-iter", "0"], "max_iter"),
    ],
)
def test_bad_input_exits_nonzero_without_traceback(tmp_path, capsys, argv, message):
    status = main(argv + ["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    assert message in err and "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_magnify_writes_figure_1_panels(tmp_path, capsys):
    rng = np.random.default_rng(1)
    clean = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    noisy = np.clip(clean + rng.integers(-6, 7, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    Image.fromarray(noisy).save(tmp_path / "adv.png")
    out = tmp_path / "mag"
    argv = ["magnify", "--image", str(tmp_path / "clean.png"), "--out", str(out)]
    assert main(argv + ["--adversarial", str(tmp_path / "adv.png")]) == 0
    assert "perturbation: L2" in capsys.readouterr().out
    names = (
        "original",
        "original_magnified",
        "adversarial",
        "adversarial_magnified",
        "perturbation",
    )
    for name in names:
        assert (out / f"{name}.png").is_file()
    # Magnification reveals the noise: the adversarial's magnified flat blocks vary more.
    mag_clean = np.asarray(Image.open(out / "original_magnified.png"), float)[2:6, 2:6]
    mag_adv = np.asarray(Image.open(out / "adversarial_magnified.png"), float)[2:6, 2:6]
    assert mag_adv.std(axis=(0, 1)).mean() > 5 * mag_clean.std(axis=(0, 1)).mean() + 1
    Image.fromarray(noisy[:16]).save(tmp_path / "small.png")
    status = main(argv + ["--adversarial", str(tmp_path / "small.png")])
    assert status == 1 and "shape" in capsys.readouterr().err


@pytest.mark.slow
def test_train_mnist_one_epoch(tmp_path, capsys):
    argv = ["train-mnist", "--which", "mnist", "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "c4_mnist.npz").is_file() and (tmp_path / "c4_mnist.json").is_file()
    assert "test accuracy" in capsys.readouterr().out
