# Root Snakefile: the pipeline lives in workflow/Snakefile; this file names the default target.
include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        rules.table.output,
        rules.figure2.output,
