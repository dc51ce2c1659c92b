# The index of a results folder: every table and figure, what it shows, the revision.

localrules:
    results_index,


rule results_index:
    input:
        rules.table.output,
        rules.comparison.output,
        expand(
            os.path.join(RESULTS, "figure2_{problem}.{ext}"),
            problem=FIG2_PROBLEMS,
            ext=["png", "pdf"],
        ),
        DIGITS_OUTPUTS,
        T2I_OUTPUTS,
    output:
        os.path.join(RESULTS, "README.md"),
    log:
        os.path.join(RESULTS, "logs", "results_index.log"),
    params:
        config=lambda w: workflow.configfiles[0] if workflow.configfiles else "config/config.yaml",
    conda:
        ENV
    script:
        "../scripts/results_index.py"
