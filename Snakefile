# Root Snakefile: the pipeline lives in workflow/Snakefile; this file names the default target.
include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        rules.table.output,
        rules.comparison.output,
        expand(f"{RESULTS}/figure2_{{problem}}.{{ext}}", problem=FIG2_PROBLEMS, ext=["png", "pdf"]),
        DIGITS_OUTPUTS,
        T2I_OUTPUTS,
        rules.results_index.output,
