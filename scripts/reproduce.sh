#!/usr/bin/env bash
# The default reproduction: the ground-truth grid through Snakemake -> results/.
# Extra arguments go to snakemake (e.g. --configfile config/smoke.yaml, -n, --forceall).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec snakemake --cores "${CORES:-$(getconf _NPROCESSORS_ONLN)}" --rerun-incomplete --printshellcmds "$@"
