"""The ``rlhfpipe`` command.

    rlhfpipe STAGE [ARGS]     run a stage of dvc.yaml by name (the same main() as stages/STAGE.py)
    rlhfpipe STAGE --help     that stage's params.yaml sections: each field's doc and current value
    rlhfpipe selftest [ARGS]  the dialogue PPO setup self-test
    rlhfpipe preset FILE      a params preset as ``dvc exp run -S`` overrides
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from typing import Callable

from rlhfpipe.cli import run_stage

REPO = Path(__file__).resolve().parents[1]
"""the checkout the package is installed from (editable install): stages/ and dvc.yaml live there"""


def stage_names() -> list[str]:
    return sorted(p.stem for p in (REPO / "stages").glob("*.py"))


def stage_main(name: str) -> Callable[[list[str]], None]:
    """The ``main`` of stages/NAME.py, loaded from its file (stages/ is the entry point dvc.yaml runs)."""
    path = REPO / "stages" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stages.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def stage_params(name: str, dvc_yaml: Path) -> list[str]:
    """The params keys dvc.yaml declares for the stage whose command runs stages/NAME.py."""
    import yaml

    for spec in (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).values():
        spec = spec.get("do", spec)
        if f"stages/{name}.py" in spec.get("cmd", ""):
            return [key for entry in spec.get("params", []) for key in (entry if isinstance(entry, (list, dict)) else [entry])]
    return []


def describe(keys: list[str], params_path: Path) -> str:
    """Each declared params key's fields: dotted name, current value, doc (from the config dataclasses)."""
    import dataclasses
    import typing

    import yaml

    from rlhfpipe.config import SECTIONS, field_docs

    params = yaml.safe_load(params_path.read_text()) if params_path.is_file() else {}
    lines = []

    def walk(cls, values: dict, prefix: str, only: str | None) -> None:
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if only is not None and f.name != only.split(".")[0]:
                continue
            value = (values or {}).get(f.name, "(not set)")
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
                walk(hints[f.name], value, f"{prefix}{f.name}.", only.split(".", 1)[1] if only and "." in only else None)
            else:
                lines.append(f"  {prefix}{f.name} = {value!r}\n      {docs.get(f.name, '')}")

    for key in keys:
        section, _, rest = key.partition(".")
        lines.append(f"{key}:")
        walk(SECTIONS[section], (params or {}).get(section, {}), f"{section}.", rest or None)
    return "\n".join(lines)


def help_text() -> str:
    return (__doc__.split("\n\n", 1)[1].rstrip() + "\n\nstages: " + ", ".join(stage_names()) + "\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(signal, "SIGPIPE"):
        # `rlhfpipe ppo --help | head` closes the pipe early: end quietly, as other command-line tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "selftest":
        from rlhfpipe.dialogue.check import main as selftest

        run_stage(selftest, rest)
    elif command == "preset":
        from rlhfpipe.presets import main as preset

        run_stage(preset, rest)
    elif command in stage_names():
        if rest in (["-h"], ["--help"]):
            print(f"rlhfpipe {command}: params.yaml keys it reads (dvc.yaml), with their docs and values\n")
            print(describe(stage_params(command, Path("dvc.yaml") if Path("dvc.yaml").is_file() else REPO / "dvc.yaml"),
                           Path("params.yaml")))
            return
        run_stage(stage_main(command), rest)
    else:
        print(f"error: unknown command {command!r}; commands: selftest, preset, {', '.join(stage_names())}",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
