"""Compare the outs of two dvc.lock files: every out's md5 (and size, file count), stage by stage.

    python scripts/compare_locks.py BASELINE_LOCK CANDIDATE_LOCK [STAGE ...]

Dependency hashes are ignored on purpose: moving code changes them without changing any result.
Stages present in only one lock are listed, not compared; given STAGE names, only those are compared
(for a run still in progress, whose lock keeps the old entries of the stages it has not rerun yet).
Exit code 1 when an out differs.
"""

from __future__ import annotations

import sys

import yaml


def outs(lock_path: str) -> dict[str, dict[str, dict]]:
    """stage -> out path -> {md5, size, nfiles} from a dvc.lock."""
    stages = (yaml.safe_load(open(lock_path)) or {}).get("stages", {})
    return {name: {o["path"]: {k: o.get(k) for k in ("md5", "size", "nfiles")} for o in spec.get("outs", [])}
            for name, spec in stages.items()}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: " + __doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    base, cand = outs(argv[0]), outs(argv[1])
    same = differ = 0
    for stage in argv[2:] or sorted(set(base) | set(cand)):
        if stage not in base or stage not in cand:
            print(f"only in {'baseline' if stage in base else 'candidate'}: {stage}")
            continue
        for path in sorted(set(base[stage]) | set(cand[stage])):
            a, b = base[stage].get(path), cand[stage].get(path)
            if a == b:
                same += 1
            else:
                differ += 1
                print(f"DIFFERS {stage}: {path}: baseline {a} candidate {b}")
    print(f"{same} outs identical, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
