"""setup.py's requirements: bounded where the code depends on an API, met
by the installed packages and by the versions tools/install.sh pins."""

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BOUNDED = ["torch", "torchaudio", "transformers", "peft", "espnet", "silero-vad", "pysubs2", "scikit-image", "scikit-learn"]


def install_requires():
    """setup.py's install_requires as {name: Requirement}, read from its
    source: the installed package's metadata is as old as its last install."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    listed = next(k.value for k in call.keywords if k.arg == "install_requires")
    return {r.name: r for r in map(Requirement, ast.literal_eval(listed))}


@pytest.mark.parametrize("name", BOUNDED)
def test_the_stack_is_bounded_on_both_sides(name):
    requires = install_requires()
    assert name in requires, f"setup.py does not require {name}"
    specifier = requires[name].specifier
    operators = {s.operator for s in specifier}
    assert operators & {"==", "~="} or (operators & {">=", ">"} and operators & {"<", "<="}), f"{name}{specifier}"


def test_torch_has_the_checkpoint_loading_api():
    # torch.serialization.safe_globals and weights_only loading by default.
    specifier = install_requires()["torch"].specifier
    lower = [Version(s.version) for s in specifier if s.operator in (">=", ">", "==", "~=")]
    assert lower and min(lower) >= Version("2.6")


@pytest.mark.parametrize("name", sorted(install_requires()))
def test_the_installed_version_meets_the_requirement(name):
    requirement = install_requires()[name]
    assert requirement.specifier.contains(importlib.metadata.version(name), prereleases=True), (
        f"{name} {importlib.metadata.version(name)} installed, setup.py needs {requirement}"
    )


def test_install_sh_pins_versions_setup_py_allows():
    text = (ROOT / "tools" / "install.sh").read_text()
    pins = {canonicalize_name(n): v for n, v in re.findall(r"\b([A-Za-z0-9_.-]+)==([0-9][^\s\"']*)", text)}
    requires = {canonicalize_name(n): r for n, r in install_requires().items()}
    assert {"torch", "torchaudio"} <= pins.keys() & requires.keys()
    for name in pins.keys() & requires.keys():
        assert requires[name].specifier.contains(pins[name]), f"install.sh: {name}=={pins[name]}, setup.py: {requires[name]}"
