"""The model registry: ``registry.json``, a file in git, so that every clone of a commit has the
same champion, the same version history and the same ``previous``.

Each promotion appends a version (its number, the model file's sha256, the experiment, the
commit it was promoted from, the data snapshot, the gate's verdict, the report) with the
``models.dvc`` that restores its ``models/`` from the DVC cache or remote, and makes it the
champion; the old champion becomes ``previous``. A rollback swaps the two, so a second rollback
undoes the first. Nothing per machine or per run (MLflow run ids, wall-clock times) is kept:
a run is found in MLflow by the model's sha256 tag (``modeling/tracking.find_run``).

Why git and not the MLflow Model Registry: the registry is part of the decision record, which
the project keeps in git (params, ``dvc.lock``, reports); an MLflow store is per machine unless
a team runs a server, and its version numbers would then differ from what the commits say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from baac_severity.config import MODEL_NAME, REGISTRY_FILE
from baac_severity.data.io import read_json, write_json


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (nothing to roll back to, an unknown version)."""


@dataclass(frozen=True)
class Version:
    """One promoted model."""

    version: int
    experiment: str
    model_sha256: str
    git_sha: str  # HEAD when it was promoted
    dataset_sha256: str
    forced: bool
    reason: str | None
    previous: int | None  # the champion it replaced
    report: str
    models_dvc: str  # the text of its models.dvc: `dvc checkout` / `dvc pull` restore models/


@dataclass(frozen=True)
class Registry:
    champion: int | None = None
    previous: int | None = None
    versions: tuple[Version, ...] = field(default_factory=tuple)

    def get(self, number: int | None) -> Version | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def champion_version(self) -> Version | None:
        return self.get(self.champion)

    @property
    def next_number(self) -> int:
        return max((v.version for v in self.versions), default=0) + 1

    def promote(self, version: Version) -> Registry:
        """``version`` (a new one) becomes the champion, the champion ``previous``."""
        return Registry(version.version, self.champion, (*self.versions, version))

    def roll_back(self) -> Registry:
        """``previous`` becomes the champion again, and the champion ``previous``."""
        if self.get(self.previous) is None or self.champion_version is None:
            raise RegistryError(
                f"{REGISTRY_FILE} has no previous champion to roll back to "
                f"(champion: {self.champion or 'none'}, previous: {self.previous or 'none'})"
            )
        return replace(self, champion=self.previous, previous=self.champion)


def load(path: Path = REGISTRY_FILE) -> Registry:
    """The registry of this checkout (empty when the file does not exist yet)."""
    data = read_json(path)
    if data is None:
        return Registry()
    try:
        versions = tuple(Version(**entry) for entry in data["versions"])
        return Registry(data["champion"], data["previous"], versions)
    except (KeyError, TypeError) as error:
        raise RegistryError(f"{path} is not a registry file: {error}") from None


def save(registry: Registry, path: Path = REGISTRY_FILE) -> None:
    """Written atomically, keys in a fixed order: one promotion is one readable git diff."""
    payload = {
        "model": MODEL_NAME,
        "champion": registry.champion,
        "previous": registry.previous,
        "versions": [asdict(v) for v in registry.versions],
    }
    write_json(payload, path, sort_keys=False)
