"""R-PINNED: generated pins are the versions this test suite runs with."""

import re
from importlib.metadata import version
from pathlib import Path

from packaging.version import Version

from scaffold.template import template_root

REPO = Path(__file__).resolve().parent.parent


def _pin_block(name: str) -> dict[str, str]:
    source = (template_root() / "templates" / "requirements.txt.jinja").read_text()
    block = source.split(f"{{%- set {name} = {{", 1)[1].split("}", 1)[0]
    return dict(re.findall(r"'([\w-]+)': '([^']+)'", block))


def template_pins() -> dict[str, str]:
    return _pin_block("pins")


def template_gpu_pins() -> dict[str, str]:
    """GPU kernels (Triton, float8, cuBLASLt's epilogues) that only CUDA projects carry; they
    need a GPU, so this suite lacks them."""
    return _pin_block("gpu_pins")


def test_every_generated_pin_is_the_version_installed_for_this_test_suite():
    pins = template_pins()
    assert {"torch", "transformers", "trl", "peft", "accelerate", "datasets"} <= set(pins)
    # A local label (torch's "+cpu") names the build, not the version.
    installed = {name: Version(version(name)).public for name in pins}
    mismatched = {n: (pin, installed[n]) for n, pin in pins.items() if installed[n] != pin}
    assert not mismatched, f"pin != installed: {mismatched}"


def test_the_test_extra_installs_exactly_the_generated_pins():
    pyproject = (REPO / "pyproject.toml").read_text()
    extra = dict(re.findall(r'"([\w-]+)==([^"]+)"', pyproject.split("test = [", 1)[1]))
    for tool in ("pytest-xdist", "mkdocs", "mkdocs-material"):  # this repo's tools only
        extra.pop(tool)
    assert extra == template_pins()


def test_gpu_only_pins_stay_out_of_the_cpu_test_extra():
    gpu_pins = template_gpu_pins()
    assert set(gpu_pins) == {"liger-kernel", "nvidia-cudnn-frontend", "nvmath-python", "torchao"}
    assert not set(gpu_pins) & set(template_pins())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert not any(name in pyproject for name in ("liger", "cudnn", "nvmath", "torchao"))
