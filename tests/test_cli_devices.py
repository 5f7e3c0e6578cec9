"""``--devices``: the batches split over several devices (MirroredStrategy), same results."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tfsmooth.cli import main
from tfsmooth.evaluation.distributed import parse_devices, select_devices


def test_parse_devices():
    assert parse_devices("all") == "all" and parse_devices(" CPU ") == "cpu"
    assert parse_devices("3") == 3 and parse_devices(2) == 2
    assert parse_devices("/cpu:0,device:CPU:1") == ("/device:CPU:0", "/device:CPU:1")
    assert parse_devices(["GPU:1"]) == ("/device:GPU:1",)
    for bad, message in [
        ("0", "at least 1 device, got 0"),
        ("", "must be 'all'"),
        ("gpu", "must be 'all'"),
        ("TPU:0", "must be 'all'"),
        ("GPU:0,", "must be 'all'"),
        ("GPU:0,gpu:0", "names /device:GPU:0 twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_devices(bad)
    with pytest.raises(TypeError, match="string"):
        parse_devices(1.5)


def test_select_devices_without_gpu():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    for spec in ("all", "cpu"):
        selection = select_devices(spec)
        assert selection.strategy is None and selection.devices == ()
        assert "no GPU visible" in selection.description and "no strategy" in selection.description
    with pytest.raises(ValueError, match="2 GPUs requested, but no GPU is visible"):
        select_devices(2)
    with pytest.raises(ValueError, match="GPU:0, not a device of this machine"):
        select_devices("GPU:0")
    one = select_devices("cpu:0")
    assert one.devices == ("/device:CPU:0",) and one.strategy.num_replicas_in_sync == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "mnist", "--devices", "0"], "at least 1 device"),
        (["reproduce", "imagenet", "--devices", "gpu"], "must be 'all'"),
        (
            ["attack", "--model", "m", "--images", "i", "--attack", "fgsm", "--devices", "x:1"],
            "all",
        ),
    ],
)
def test_bad_devices_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: --devices" in err and message in err
    assert not (tmp_path / "out").exists()


SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from PIL import Image
    from tfsmooth.cli import main
    from tfsmooth.evaluation import protocol
    replicas, original = [], protocol._attack_batch
    def spy(*args):
        strategy = args[5]
        replicas.append(1 if strategy is None else len(strategy.extended.worker_devices))
        return original(*args)
    protocol._attack_batch = spy
    root = pathlib.Path(sys.argv[1])
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        pixels = rng.integers(40, 215, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"photo{i}.png")
    keras.utils.set_random_seed(2)
    net = keras.Sequential([keras.Input([12, 12, 3]), keras.layers.Flatten(),
                            keras.layers.Dense(4)])
    net.save(root / "tiny.keras")
    runs = {}
    for name, devices in (("one", []), ("two", ["--devices", "CPU:0,CPU:1"])):
        attack = ["attack", "--model", str(root / "tiny.keras"), "--images", str(photos),
                  "--attack", "cw", "--quick", "--batch-size", "3", "--no-progress",
                  "--override", "C&W:steps=8", "--override", "C&W:binary_search_steps=2",
                  "--out", str(root / f"attack-{name}")]
        mnist = ["reproduce", "mnist", "--models", "c4", "--attacks", "FGSM", "I-FGSM",
                 "--n", "12", "--batch-size", "8", "--quick", "--no-progress",
                 "--out", str(root / f"mnist-{name}")]
        replicas.clear()
        assert main(attack + devices) == 0
        assert main(mnist + devices) == 0
        print("REPLICAS", name, sorted(set(replicas)))
    """
)


def _records(folder):
    out = {}
    for path in sorted(folder.rglob("*.jsonl")):
        lines = path.read_text().splitlines()
        out[path.relative_to(folder).as_posix()] = [
            {k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines[1:]
        ]
    return out


def test_two_logical_cpus_give_the_results_of_one_device(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("devices: 2 devices (/device:CPU:0, /device:CPU:1)") == 2, done.stdout
    assert "REPLICAS one [1]" in done.stdout and "REPLICAS two [2]" in done.stdout, done.stdout
    for kind in ("attack", "mnist"):
        one, two = _records(tmp_path / f"{kind}-one"), _records(tmp_path / f"{kind}-two")
        assert one and one.keys() == two.keys()
        for name in one:
            assert len(one[name]) == len(two[name]) > 0
            for a, b in zip(one[name], two[name]):
                assert a.keys() == b.keys()
                for key in a:
                    if isinstance(a[key], float):
                        assert b[key] == pytest.approx(a[key], rel=1e-5), (name, key)
                    else:
                        assert a[key] == b[key], (name, key)
    pngs = sorted(p.name for p in (tmp_path / "attack-one" / "adversarial").iterdir())
    assert pngs == sorted(p.name for p in (tmp_path / "attack-two" / "adversarial").iterdir())
    assert pngs
