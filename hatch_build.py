"""Build hook: the wheel carries every released version of the template, as a git bundle.

Projects record the template version that rendered them, and `copier update` needs that
version again to tell the owner's edits from the template's. The wheel therefore ships
`scaffold/_template/releases.bundle` — every `v*` tag of this checkout plus the version
being built, each reduced to copier.yml + templates/ (scaffold/releases.py) — and
`scaffold/_template/release-tag`, the tag of the version being built. scaffold copies
the bundle into a template repository in the user's cache (scaffold/template_cache.py).

An sdist carries the same two files at its root, so a wheel built from it (as
`python -m build` does) gets them too without a git checkout.
"""

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = "releases.bundle"
RELEASE_TAG = "release-tag"
IN_SDIST = "template-"  # prefix at the sdist's root: template-releases.bundle, ...


class TemplateReleasesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return  # an editable install renders from its checkout (scaffold/source.py)
        root = Path(self.root)
        prebuilt = root / f"{IN_SDIST}{BUNDLE}", root / f"{IN_SDIST}{RELEASE_TAG}"
        if not (root / ".git").exists() and all(path.is_file() for path in prebuilt):
            bundle, tag_file = prebuilt  # building the wheel from our own sdist
        else:
            bundle, tag_file = self._build(root)
        prefix = "scaffold/_template/" if self.target_name == "wheel" else IN_SDIST
        build_data["force_include"][str(bundle)] = prefix + BUNDLE
        build_data["force_include"][str(tag_file)] = prefix + RELEASE_TAG

    def _build(self, root: Path) -> tuple[Path, Path]:
        # By path: the build environment may not have scaffold (or has another one).
        spec = importlib.util.spec_from_file_location("_releases", root / "scaffold/releases.py")
        releases = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(releases)
        self._out = tempfile.TemporaryDirectory(prefix="scaffold-releases-")
        out = Path(self._out.name)
        tag = releases.build_bundle(root, self.metadata.version, out / BUNDLE)
        (out / RELEASE_TAG).write_text(tag + "\n")
        self.app.display_info(f"template versions bundled; this one is {tag}")
        return out / BUNDLE, out / RELEASE_TAG

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_out", None) is not None:
            self._out.cleanup()
