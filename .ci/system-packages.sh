#!/usr/bin/env bash
# System packages the test suite uses for real: Slurm and munge (the Slurm launcher tests), Chromium
# (renders the slide decks headless) and remark.js (inlined into every deck). Idempotent; as root.
set -euo pipefail
need=()
command -v sbatch   >/dev/null || need+=(slurm-wlm)
command -v munged   >/dev/null || need+=(munge)
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/javascript/remark-slide/remark.min.js ] || [ -n "$(ls /usr/share/javascript/remark*/remark*.js 2>/dev/null)" ] || need+=(libjs-remark-slide)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
