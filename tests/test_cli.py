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
