# Root Snakefile: the pipeline lives in workflow/Snakefile; this file names the default target.
include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        GT_OUTPUTS,
        DIGITS_OUTPUTS,
        T2I_OUTPUTS,
        REPORT_OUTPUTS,
        rules.results_index.output,
