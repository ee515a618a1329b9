"""Load a folder of mapping files: validate every line, compile every rule, report every error.

The loader never stops at the first problem: it collects a :class:`MappingFileError` with
FILE:LINE for each one, so ``mwlbroker mappings check`` can list them all. Nothing is
compiled per message: field paths are parsed, regular expressions compiled, tables resolved
and DICOM keywords looked up here, once.

Files become profiles in three steps: this module reads the folder (one document per
profile), :mod:`~mwlbroker.mapping.extends` merges each with the profile it extends, and
:mod:`~mwlbroker.mapping.profile_compiler` compiles its sections, with
:mod:`~mwlbroker.mapping.rule_compiler` compiling the rules in them.
"""

from __future__ import annotations

import re
from pathlib import Path

from mwlbroker.mapping.extends import resolve_extends
from mwlbroker.mapping.profile import Profile
from mwlbroker.mapping.profile_compiler import ProfileCompiler
from mwlbroker.mapping.source import Mapping, MappingFileError, Scalar, read_yaml

BUNDLED = Path(__file__).resolve().parent / "bundled"
"""The mapping files that ship with the broker (a link to the top-level ``mappings/``)."""

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class MappingLoadError(Exception):
    """The mapping files cannot be used; ``errors`` lists every problem with FILE:LINE."""

    def __init__(self, errors: list[MappingFileError]) -> None:
        self.errors = errors
        count = len(errors)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in the mapping files:\n"
            + "\n".join(str(error) for error in errors)
        )


def mapping_files(folder: Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files of a folder, in name order."""
    return sorted(
        path for path in folder.iterdir() if path.suffix in (".yaml", ".yml") and path.is_file()
    )


def load_profiles(folder: Path) -> list[Profile]:
    """Every profile in ``folder``, compiled; raises :class:`MappingLoadError` listing all errors."""
    errors: list[MappingFileError] = []
    if not folder.is_dir():
        raise MappingLoadError([MappingFileError(str(folder), 0, "is not a folder")])
    roots = _read_folder(folder, errors)
    if not roots and not errors:
        errors.append(MappingFileError(str(folder), 0, "holds no mapping files (*.yaml)"))
    bundled: dict[str, Mapping] | None = None

    def base_for(name: str) -> Mapping | None:
        nonlocal bundled
        if name in roots:
            return roots[name]
        if bundled is None:
            bundled = {} if folder.resolve() == BUNDLED.resolve() else _read_folder(BUNDLED, errors)
        return bundled.get(name)

    profiles = []
    for name, root in roots.items():
        merged = resolve_extends(root, base_for, errors, [name])
        if merged is not None:
            profile = ProfileCompiler(merged, errors).compile()
            if profile is not None:
                profiles.append(profile)
    if errors:
        unique = sorted(set(errors), key=lambda error: (error.file, error.line, error.message))
        raise MappingLoadError(unique)
    return profiles


def _read_folder(folder: Path, errors: list[MappingFileError]) -> dict[str, Mapping]:
    roots: dict[str, Mapping] = {}
    for path in mapping_files(folder):
        root = read_yaml(path, errors)
        if root is None:
            continue
        if not isinstance(root, Mapping):
            errors.append(MappingFileError(root.file, root.line, "a mapping file is a mapping"))
            continue
        name_node = root.get("profile")
        if not isinstance(name_node, Scalar) or not _PROFILE_NAME.fullmatch(name_node.text):
            line = root.key_line("profile") if name_node is not None else 1
            errors.append(
                MappingFileError(
                    root.file, line, "profile: NAME is required (letters, digits, . _ -)"
                )
            )
            continue
        name = name_node.text
        if name in roots:
            errors.append(
                MappingFileError(
                    root.file,
                    name_node.line,
                    f"profile {name!r} is also defined in {roots[name].file}",
                )
            )
            continue
        roots[name] = root
    return roots
