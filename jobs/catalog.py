"""Which of the named models a site can offer, from its settings alone: no torch, no network.

With a model folder (STEMSITE_MODEL_REPO), the models whose files are all there, found by the
rules demucs' local loader follows (`<name>.yaml` listing signatures, each a `<signature>-<sha>.th`
or `<signature>.th`; or a lone `<name>.th`). Without one, every pretrained name: demucs downloads
them on first use. What the workers really load is what they report (jobs/capabilities.py).
"""

from pathlib import Path

import yaml

from jobs.options import MODELS


def models_in_folder(folder: Path) -> list[str]:
    """Named models whose every file is in `folder`, in the order the form lists them."""
    try:
        files = list(Path(folder).iterdir())
    except OSError:
        return []
    signatures = {path.stem.rsplit("-", 1)[0] for path in files if path.suffix == ".th"}
    bags = {path.stem: path for path in files if path.suffix == ".yaml"}
    found = []
    for name in MODELS:
        if name in bags:
            members = _bag_members(bags[name])
            if members and all(member in signatures for member in members):
                found.append(name)
        elif name in signatures:
            found.append(name)
    return found


def _bag_members(path: Path) -> list[str]:
    try:
        bag = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    members = bag.get("models") if isinstance(bag, dict) else None
    return [str(member) for member in members] if isinstance(members, list) else []


def offered_models(repo: str) -> list[str]:
    """The models a site with this STEMSITE_MODEL_REPO can offer, before any worker has said more."""
    return models_in_folder(Path(repo)) if repo else list(MODELS)
