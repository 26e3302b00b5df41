#!/usr/bin/env bash
# bf16 smoke run of SFT, reward, PPO and GRPO at the SmolLM2-135M and Llama 3.2 1B shapes (random init, no hub):
# prints episodes/s and peak GPU memory per phase. Needs one CUDA GPU; about 5 minutes on an H100-class card.
#   bench/gpu_smoke.sh                 # on a GPU machine
#   bench/gpu_smoke.sh --cpu --tiny    # checks the script end to end on a CPU (measures nothing useful)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python}" -m bench.gpu_smoke "$@"
