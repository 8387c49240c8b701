"""Where the Copier template lives: inside the installed package, or in the checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "_template"


def template_root() -> Path:
    """The directory holding copier.yml (the template's root for Copier)."""
    # A wheel carries the template under scaffold/_template (see pyproject.toml);
    # a source checkout or editable install has it at the repository root.
    for candidate in (_PACKAGED, _PACKAGE.parent):
        if (candidate / "copier.yml").is_file():
            return candidate
    raise FileNotFoundError(f"scaffold's template (copier.yml) is missing near {_PACKAGE}")


def checkout_root() -> Path | None:
    """The git checkout scaffold runs from (editable install, PYTHONPATH), if it does."""
    root = template_root()
    return root if root != _PACKAGED and (root / ".git").exists() else None


def packaged_releases() -> tuple[Path, str] | None:
    """The wheel's bundle of template versions and the tag of its own, if installed so.

    hatch_build.py writes both at build time.
    """
    bundle, tag_file = _PACKAGED / "releases.bundle", _PACKAGED / "release-tag"
    if not (bundle.is_file() and tag_file.is_file()):
        return None
    return bundle, tag_file.read_text().strip()
