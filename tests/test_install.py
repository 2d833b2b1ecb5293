"""hireslm installed from a built wheel, outside the checkout, restores with what it ships.

The wheel is built from a copy of the working tree (so the checkout gets no ``build/``),
installed with pip into a fresh virtualenv that borrows the test venv's dependencies through a
``.pth`` line (``.pth`` files inside a directory named that way are not run, so the test
venv's editable hireslm stays out), and run from another folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import soundfile as sf
from release_factory import make_tiny_release

from hireslm import resources

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = sorted((ROOT / "examples" / "librivox").glob("*.flac"))[1]  # the shortest, 3.1 s
# What the wheel is built from: the package (its _data links), and what pyproject names.
SOURCES = ["pyproject.toml", "README.md", "hireslm", "configs", "checkpoints/hireslm-demo"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with hireslm installed from its wheel; returns its bin folder."""
    work = tmp_path_factory.mktemp("install")
    tree = work / "tree"
    for name in SOURCES:
        source, target = ROOT / name, tree / name
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", str(tree), "-w", str(work / "dist")], cwd=work)
    wheel = next((work / "dist").glob("hireslm-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    # --ignore-installed: pip must never uninstall the test venv's own hireslm.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--ignore-installed", str(wheel)], cwd=work)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], cwd=work).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def test_the_wheel_carries_configs_and_the_release(installed, tmp_path):
    where = _run([str(installed / "python"), "-c",
                  "import hireslm, hireslm.resources as r, hireslm.cli.degrade as d; "
                  "print(hireslm.__file__); print(r.default_release()); print(d.DEFAULT_CONFIG)"],
                 cwd=tmp_path).stdout.split()
    site = installed.parent / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # not the checkout's
    assert (Path(where[1]) / "config.yaml").is_file() and Path(where[2]).is_file()


def test_restore_from_another_folder_with_the_packaged_release(installed, tmp_path):
    done = _run([str(installed / "hireslm"), "restore", str(EXAMPLE), "-o", "out",
                 "--no-progress"], cwd=tmp_path)
    assert "_data/hireslm-demo" in done.stderr  # the packaged release, named in the log
    output = tmp_path / "out" / EXAMPLE.with_suffix(".wav").name
    info, source = sf.info(str(output)), sf.info(str(EXAMPLE))
    assert info.samplerate == 48000 and info.frames == round(source.frames * 3)
    record = json.loads((tmp_path / "out" / "restore_report.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok"
    # degrade --chain finds its packaged config.
    (tmp_path / "clean").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "clean")
    _run([str(installed / "hireslm"), "degrade", "clean", "degraded", "--chain"], cwd=tmp_path)
    assert (tmp_path / "degraded" / EXAMPLE.with_suffix(".wav").name).is_file()


def test_hireslm_home_comes_first(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HIRESLM_HOME", str(home))
    # Nothing there yet: the packaged release (here the checkout's link to it).
    assert resources.default_release() == resources.DATA_DIR / "hireslm-demo"
    assert (resources.default_release() / "config.yaml").is_file()
    release = make_tiny_release(home / "checkpoints" / "hireslm-demo")
    assert resources.default_release() == release
    assert str(home / "checkpoints" / "hireslm-demo") in resources.missing_release_message()


def test_the_checkout_finds_the_same_files():
    """An editable install resolves the links to the top-level folders."""
    assert (resources.DATA_DIR / "hireslm-demo").resolve() == ROOT / "checkpoints" / "hireslm-demo"
    assert resources.config_path("degradations.yaml").resolve() == (
        ROOT / "configs" / "degradations.yaml")


def test_a_missing_default_release_says_how_to_get_one(installed, tmp_path):
    site = Path(_run([str(installed / "python"), "-c",
                      "import hireslm.resources as r; print(r.DATA_DIR)"], cwd=tmp_path)
                .stdout.strip())
    packaged, aside = site / "hireslm-demo", site / "hireslm-demo.aside"
    packaged.rename(aside)
    try:
        done = _run([str(installed / "hireslm"), "restore", str(EXAMPLE), "-o", "out"],
                    cwd=tmp_path, check=False)
    finally:
        aside.rename(packaged)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no default release found" in done.stderr and "--checkpoint DIR" in done.stderr
