#!/usr/bin/env bash
# Seed robustness: queue one DVC experiment per seed that reruns the RL stages (ppo, grpo, moodpo_warmup,
# moodpo@1, moodpo@2, dialogue_ppo) and their evaluations (evaluate@ppo, evaluate@grpo, compare, moodpo_eval) with that seed, SFT and
# the reward model shared (their params do not change, so DVC restores them from the cache), then run the queue
# one experiment at a time and write the table:
#
#   dvc repro                     # once: SFT, reward model and the rest in the cache
#   scripts/seeds.sh              # seeds 0 1 2; or scripts/seeds.sh 3 4 5
#   -> metrics/seeds.md           (python scripts/seed_table.py reads `dvc exp show --json`)
#
# Seed s sets ppo.seed, grpo.seed, dialogue.ppo.seed and moodpo.warmup.seed to s, and the MOODPO iterations to 2s
# and 2s+1, so seed 0 is the committed default. Experiments are named seed-<s>; remove old ones first (dvc exp remove seed-0 ...).
# Evaluation seeds (evaluate.seed, moodpo_eval.seed, dialogue.seed) stay fixed: every experiment is measured on the
# same prompts with the same sampling noise, so what differs between them is training.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for s in "${seeds[@]}"; do
  [[ "$s" =~ ^[0-9]+$ ]] || { echo "error: seed '$s' is not a non-negative integer" >&2; exit 2; }
done
for s in "${seeds[@]}"; do
  dvc exp run --queue -n "seed-$s" \
    -S "ppo.seed=$s" -S "grpo.seed=$s" -S "dialogue.ppo.seed=$s" -S "moodpo.warmup.seed=$s" \
    -S "moodpo.iteration_1.seed=$((2 * s))" -S "moodpo.iteration_2.seed=$((2 * s + 1))"
done
# one at a time: on a CPU machine parallel jobs only fight over cores and change float sums
dvc queue start --jobs 1
dvc queue status
# not `dvc queue status | grep -q`: under pipefail, grep -q closing the pipe early fails the test at once
while [[ "$(dvc queue status)" =~ Running|Queued ]]; do sleep 30; done
python scripts/seed_table.py --prefix seed- --out metrics/seeds.md
