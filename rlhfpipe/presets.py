"""Params presets: YAML files holding part of params.yaml, applied as ``dvc exp run -S`` overrides.

    dvc exp run $(python -m rlhfpipe.presets configs/presets/smollm2-135m.yaml)

prints ``-S key=value`` for every leaf of the preset (lists and mappings whole, in DVC's Hydra override
syntax), after checking that params.yaml with the preset merged in passes validation. params.yaml itself
is not touched, so every experiment records exactly which values the preset changed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from rlhfpipe.config import SECTIONS, load_section
from rlhfpipe.errors import PipelineError


def leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) for every scalar or list; nested mappings are walked (a list is one value)."""
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out += leaves(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def override_value(value) -> str:
    """``value`` in Hydra's override grammar, without spaces, so the shell passes it as one word."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if any(c.isspace() for c in value):
            raise PipelineError(f"preset value {value!r} contains whitespace; pass it with -S yourself")
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    raise PipelineError(f"preset value {value!r} has an unsupported type {type(value).__name__}")


def merged(params: dict, preset: dict) -> dict:
    out = dict(params)
    for key, value in preset.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def overrides(preset_path: Path, params_path: Path = Path("params.yaml")) -> list[str]:
    """The ``-S`` arguments of a preset; a preset that would make params.yaml invalid stops with one line."""
    if not preset_path.is_file():
        raise PipelineError(f"{preset_path}: preset not found")
    preset = yaml.safe_load(preset_path.read_text(encoding="utf-8")) or {}
    for section in preset:
        if section not in SECTIONS or not isinstance(preset[section], dict):
            raise PipelineError(f"{preset_path}: {section!r} is not a params.yaml section")
    params = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "params.yaml"
        candidate.write_text(yaml.safe_dump(merged(params, preset), sort_keys=False))
        for section in SECTIONS:
            load_section(section, candidate)
    args = []
    for key, value in leaves(preset):
        args += ["-S", f"{key}={override_value(value)}"]
    return args


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise PipelineError("usage: python -m rlhfpipe.presets PRESET_YAML")
    print(" ".join(overrides(Path(argv[0]))))


if __name__ == "__main__":
    from rlhfpipe.cli import run_stage

    run_stage(main)
