# Exact ground truth: run config -> fine-tune -> evaluate against the exact target -> the
# Theorem 1 table, the method comparison (table and Pareto plot), the Figure 2 panels.

# seconds of work each: on a cluster they run in the main process, not as jobs of their own
localrules:
    run_config,
    table,
    comparison,
    figure2,


rule run_config:
    output:
        os.path.join(RUN_DIR, "run.yaml"),
    log:
        os.path.join(RUN_DIR, "run_config.log"),
    priority: 10  # a second's work that unlocks a run, the long ones included (below)
    params:
        data=lambda w: RUN_CONFIGS[os.path.join(RUNS, w.run)],
    conda:
        ENV
    script:
        "../scripts/write_yaml.py"


rule finetune:
    input:
        os.path.join(RUN_DIR, "run.yaml"),
    output:
        os.path.join(RUN_DIR, "model.safetensors"),
    log:
        os.path.join(RUN_DIR, "finetune.log"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        ENV
    shell:
        # tqdm writes its bar to the log every 10 s: `tail -f <run>/finetune.log` follows a run
        "TQDM_MININTERVAL=10 OMP_NUM_THREADS={threads} python -m amcli finetune {input} --run-dir $(dirname {output}) > {log} 2>&1"


use rule finetune as finetune_long with:
    priority: 10
    wildcard_constraints:
        run="|".join(re.escape(r) for r in LONG_RUNS) or "(?!)",


ruleorder: finetune_long > finetune


# The noise floor of an evaluation (distances between pairs of exact target samples) needs no
# model: computed once per problem and evaluation setting, read by every run's evaluation.
rule noise_floor:
    output:
        os.path.join(RUNS, "floors", "{floor}.json"),
    log:
        os.path.join(RUNS, "floors", "{floor}.log"),
    wildcard_constraints:
        floor=r"[^/]+/lam[^/]+/[0-9a-f]{12}",
    params:
        key=lambda w: FLOORS[os.path.join(RUNS, "floors", f"{w.floor}.json")],
    threads: 1
    conda:
        ENV
    script:
        "../scripts/noise_floor.py"


rule evaluate:
    input:
        cfg=os.path.join(RUN_DIR, "run.yaml"),
        model=os.path.join(RUN_DIR, "model.safetensors"),
        floor=lambda w: FLOOR_OF[os.path.join(RUNS, w.run)],
    output:
        eval=os.path.join(RUN_DIR, "eval.json"),
        samples=os.path.join(RUN_DIR, "samples.npz"),
    log:
        os.path.join(RUN_DIR, "evaluate.log"),
    threads: 1
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} python -m amcli evaluate {input.cfg} --run-dir $(dirname {output.eval}) --floor {input.floor} > {log} 2>&1"


# the tables and figures of this family: none in a config without a grid
GT_OUTPUTS = (
    [
        os.path.join(RESULTS, f"{name}.{ext}")
        for name in ("ground_truth", "comparison")
        for ext in ("csv", "md")
    ]
    + [os.path.join(RESULTS, f"pareto.{ext}") for ext in ("png", "pdf")]
    + [os.path.join(RESULTS, f"figure2_{p}.{ext}") for p in FIG2_PROBLEMS for ext in ("png", "pdf")]
    if RUN_CONFIGS
    else []
)


rule table:
    input:
        [os.path.join(d, "eval.json") for d in run_dirs(figure2_runs(config))],
    output:
        csv=os.path.join(RESULTS, "ground_truth.csv"),
        md=os.path.join(RESULTS, "ground_truth.md"),
    log:
        os.path.join(RESULTS, "logs", "ground_truth.log"),
    conda:
        ENV
    script:
        "../scripts/table.py"


rule comparison:
    input:
        [os.path.join(d, "eval.json") for d in run_dirs(all_runs(config))],
    output:
        csv=os.path.join(RESULTS, "comparison.csv"),
        md=os.path.join(RESULTS, "comparison.md"),
        png=report(
            os.path.join(RESULTS, "pareto.png"),
            caption="../report/pareto.rst",
            category="2. Method comparison",
            labels={"figure": "reward against distance to the base"},
        ),
        pdf=os.path.join(RESULTS, "pareto.pdf"),
    log:
        os.path.join(RESULTS, "logs", "comparison.log"),
    conda:
        ENV
    script:
        "../scripts/comparison.py"


rule figure2:
    input:
        lambda w: [os.path.join(d, "samples.npz") for d in run_dirs(figure2_runs(config, w.problem))],
    output:
        png=report(
            os.path.join(RESULTS, "figure2_{problem}.png"),
            caption="../report/theorem1_figure.rst",
            category="1. Theorem 1",
            labels={"figure": "Figure 2 (samples against the exact tilt)", "problem": "{problem}"},
        ),
        pdf=os.path.join(RESULTS, "figure2_{problem}.pdf"),
    log:
        os.path.join(RESULTS, "logs", "figure2_{problem}.log"),
    conda:
        ENV
    script:
        "../scripts/figure2.py"

