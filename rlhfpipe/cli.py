"""What every stage entry point shares: one-line errors, pinned threads, offline-friendly env."""

from __future__ import annotations

import os
import sys
from typing import Callable

from rlhfpipe.errors import PipelineError


def run_stage(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; a PipelineError becomes ``error: <message>`` on stderr and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        main(sys.argv[1:] if argv is None else argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # outside an atomic output, e.g. creating an output's folder: name the path all the same
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        sys.exit(2)


def setup_runtime(num_threads: int, seed: int) -> None:
    """Pin intra-op threads and seed every generator, so a stage is reproducible on one machine type."""
    import random

    import numpy as np
    import torch

    torch.set_num_threads(num_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def usage(argv: list[str], n: int, names: str) -> list[str]:
    """The ``n`` paths a stage is called with. ``--help`` prints the usage line; any other option is refused, so
    that ``stages/corpus.py --help`` never writes a corpus to a file named ``--help``."""
    if argv in (["-h"], ["--help"]):
        print(f"usage: {names}\n(the params.yaml keys a stage reads: rlhfpipe STAGE --help)")
        sys.exit(0)
    options = [arg for arg in argv if arg.startswith("-")]
    if options:
        raise PipelineError(f"usage: {names} (takes no options, got {options[0]!r})")
    if len(argv) != n:
        raise PipelineError(f"usage: {names} (got {len(argv)} arguments, expected {n})")
    return argv
