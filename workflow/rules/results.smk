# The index of a results folder (every table and figure, what it shows, the revision), and the
# tables as HTML for `snakemake --report` (its viewer shows images and HTML, not CSV or Markdown).

# the report's table pages: name -> (CSV, category, caption, label); only configured experiments
REPORT_TABLES = {}
if RUN_CONFIGS:
    REPORT_TABLES["ground_truth"] = (rules.table.output.csv, "1. Theorem 1", "theorem1_table", "distances to the exact tilt")
    REPORT_TABLES["comparison"] = (rules.comparison.output.csv, "2. Method comparison", "comparison_table", "every method, every problem")
if DIGITS is not None:
    REPORT_TABLES["digits"] = (os.path.join(DRES, "table.csv"), "3. Digits", "digits_table", "the paper's columns")
if T2I is not None:
    REPORT_TABLES["t2i"] = (os.path.join(TRES, "table.csv"), "4. Text-to-image", "t2i_table", "image metrics")
REPORT_OUTPUTS = [os.path.join(RESULTS, "report", f"{name}.html") for name in REPORT_TABLES]

localrules:
    results_index,


for _name, (_csv, _category, _caption, _label) in REPORT_TABLES.items():

    rule:
        name:
            f"report_table_{_name}"
        input:
            _csv,
        output:
            report(
                os.path.join(RESULTS, "report", f"{_name}.html"),
                caption=f"../report/{_caption}.rst",
                category=_category,
                labels={"table": _label},
            ),
        log:
            os.path.join(RESULTS, "logs", f"report_table_{_name}.log"),
        localrule: True
        conda:
            ENV
        script:
            "../scripts/html_table.py"


rule results_index:
    input:
        GT_OUTPUTS,
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
