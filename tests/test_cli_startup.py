"""``tfsmooth --help`` / ``--version`` answer at once: they do not import TensorFlow."""

import subprocess
import sys

import pytest

PROBE = (
    "import sys\n"
    "from tfsmooth.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit as exit:\n"
    "    code = exit.code\n"
    "print('TF-IMPORTED' if 'tensorflow' in sys.modules else 'TF-NOT-IMPORTED')\n"
)


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["reproduce", "--help"], ["attack", "--help"]]
)
def test_help_and_version_do_not_import_tensorflow(argv):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.strip().endswith("TF-NOT-IMPORTED"), out
    assert "usage:" in out or "tfsmooth " in out


def test_top_level_names_load_lazily():
    import tfsmooth

    assert tfsmooth.Smoother.__module__ == "tfsmooth.smoothing.smoother"
    assert "attacks" in dir(tfsmooth) and tfsmooth.attacks.L2CarliniWagnerAttack
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfsmooth.nope  # noqa: B018
