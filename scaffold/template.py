"""Where the Copier template lives: inside the installed package, or in the checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def template_root() -> Path:
    """The directory holding copier.yml (the template's root for Copier)."""
    # A wheel carries the template under scaffold/_template (see pyproject.toml);
    # a source checkout or editable install has it at the repository root.
    for candidate in (_PACKAGE / "_template", _PACKAGE.parent):
        if (candidate / "copier.yml").is_file():
            return candidate
    raise FileNotFoundError(f"scaffold's template (copier.yml) is missing near {_PACKAGE}")
