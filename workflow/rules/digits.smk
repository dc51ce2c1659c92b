# The digits benchmark (config key `digits`, amcli/digits.py): pretrain the base and the
# classifiers once (cached), the importance-sampling reference, the base at each guidance
# weight, methods x reward scales x seeds fine-tuning runs, then the table, the Pareto plots
# and the sample grid in <results_dir>/digits/; the convergence methods also at shorter budgets
# (<run>/budget<N>/), for the convergence figure. Validated when the DAG is built.
from amcli.digits import parse_digits_config
from amcli.config import ConfigError

DIGITS = config.get("digits")
if DIGITS is not None:
    try:
        DIGITS_CFG = parse_digits_config(DIGITS)
    except ConfigError as e:
        raise ValueError(f"invalid workflow config: {e}") from None
    DRUNS = os.path.join(RUNS, "digits")
    DRES = os.path.join(RESULTS, "digits")
    DIGITS_RUNS = [
        os.path.join(DRUNS, m, f"lam{lam_tag(lam)}", f"seed{s}")
        for m in DIGITS_CFG.methods
        for lam in DIGITS_CFG.reward_scales
        for s in DIGITS_CFG.seeds
    ]
    DIGITS_GUIDANCE = [1.0, *DIGITS_CFG.guidance]
    DIGITS_CURVE_RUNS = [
        os.path.join(DRUNS, m, f"lam{lam_tag(lam)}", f"seed{s}", *budget)
        for m in DIGITS_CFG.convergence.methods
        for lam in DIGITS_CFG.reward_scales
        for s in DIGITS_CFG.seeds
        for budget in [*([f"budget{n}"] for n in DIGITS_CFG.convergence.iterations), []]
    ]
    DIGITS_OUTPUTS = [
        os.path.join(DRES, name)
        for name in ("table.csv", "table.md", "pareto.png", "pareto.pdf", "samples.png")
    ]
    if DIGITS_CFG.convergence.methods:
        DIGITS_OUTPUTS += [
            os.path.join(DRES, name)
            for name in ("convergence.csv", "convergence.md", "convergence.png", "convergence.pdf")
        ]
else:
    DIGITS_OUTPUTS = []


if DIGITS is not None:

    localrules:
        digits_config,
        digits_report,
        digits_convergence,

    rule digits_config:
        output:
            os.path.join(DRUNS, "digits.yaml"),
        priority: 20
        params:
            data={**DIGITS, "cache": os.path.join(DRUNS, "assets")},
        log:
            os.path.join(DRUNS, "digits_config.log"),
        conda:
            ENV
        script:
            "../scripts/write_yaml.py"

    rule digits_pretrain:
        input:
            os.path.join(DRUNS, "digits.yaml"),
        output:
            os.path.join(DRUNS, "pretrain.json"),
        log:
            os.path.join(DRUNS, "pretrain.log"),
        priority: 20  # every other digits job waits for it
        threads: 1
        conda:
            ENV
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits pretrain {input} > {output}.tmp 2> {log} && mv {output}.tmp {output}"

    rule digits_reference:
        input:
            cfg=os.path.join(DRUNS, "digits.yaml"),
            pretrained=os.path.join(DRUNS, "pretrain.json"),
        output:
            os.path.join(DRUNS, "reference.json"),
        log:
            os.path.join(DRUNS, "reference.log"),
        threads: 1
        conda:
            ENV
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits reference {input.cfg} --out {output} > {log} 2>&1"

    rule digits_base:
        input:
            cfg=os.path.join(DRUNS, "digits.yaml"),
            pretrained=os.path.join(DRUNS, "pretrain.json"),
        output:
            os.path.join(DRUNS, "base", "guidance{w}.json"),
        log:
            os.path.join(DRUNS, "base", "guidance{w}.log"),
        threads: 1
        conda:
            ENV
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits base {input.cfg} --guidance {wildcards.w} --out {output} > {log} 2>&1"

    rule digits_run:
        input:
            cfg=os.path.join(DRUNS, "digits.yaml"),
            pretrained=os.path.join(DRUNS, "pretrain.json"),
        output:
            os.path.join(DRUNS, "{method}", "lam{lam}", "seed{seed}", "eval.json"),
        log:
            os.path.join(DRUNS, "{method}", "lam{lam}", "seed{seed}", "run.log"),
        wildcard_constraints:
            method="[a-z_]+",
            lam="[0-9.e+-]+",
            seed=r"\d+",
        threads: 1
        conda:
            ENV
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits run {input.cfg} --method {wildcards.method}"
            " --reward-scale {wildcards.lam} --seed {wildcards.seed} --run-dir $(dirname {output}) > {log} 2>&1"

    rule digits_budget:
        input:
            cfg=os.path.join(DRUNS, "digits.yaml"),
            pretrained=os.path.join(DRUNS, "pretrain.json"),
        output:
            os.path.join(DRUNS, "{method}", "lam{lam}", "seed{seed}", "budget{n}", "eval.json"),
        log:
            os.path.join(DRUNS, "{method}", "lam{lam}", "seed{seed}", "budget{n}", "run.log"),
        wildcard_constraints:
            method="[a-z_]+",
            lam="[0-9.e+-]+",
            seed=r"\d+",
            n=r"\d+",
        threads: 1
        conda:
            ENV
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits run {input.cfg} --method {wildcards.method}"
            " --reward-scale {wildcards.lam} --seed {wildcards.seed} --iterations {wildcards.n}"
            " --run-dir $(dirname {output}) > {log} 2>&1"

    rule digits_convergence:
        input:
            runs=[os.path.join(d, "eval.json") for d in DIGITS_CURVE_RUNS],
            reference=os.path.join(DRUNS, "reference.json"),
        output:
            csv=os.path.join(DRES, "convergence.csv"),
            md=os.path.join(DRES, "convergence.md"),
            png=report(
                os.path.join(DRES, "convergence.png"),
                caption="../report/digits_convergence.rst",
                category="3. Digits",
                labels={"figure": "distance to the reference against the budget"},
            ),
            pdf=os.path.join(DRES, "convergence.pdf"),
        log:
            os.path.join(DRES, "logs", "convergence.log"),
        conda:
            ENV
        script:
            "../scripts/digits_convergence.py"

    rule digits_report:
        input:
            runs=[os.path.join(d, "eval.json") for d in DIGITS_RUNS],
            base=[os.path.join(DRUNS, "base", f"guidance{lam_tag(w)}.json") for w in DIGITS_GUIDANCE],
            reference=os.path.join(DRUNS, "reference.json"),
            pretrained=os.path.join(DRUNS, "pretrain.json"),
        output:
            csv=os.path.join(DRES, "table.csv"),
            md=os.path.join(DRES, "table.md"),
            png=report(
                os.path.join(DRES, "pareto.png"),
                caption="../report/digits_pareto.rst",
                category="3. Digits",
                labels={"figure": "consistency against diversity and realism"},
            ),
            pdf=os.path.join(DRES, "pareto.pdf"),
            samples=report(
                os.path.join(DRES, "samples.png"),
                caption="../report/digits_samples.rst",
                category="3. Digits",
                labels={"figure": "samples per method and reward scale"},
            ),
        log:
            os.path.join(DRES, "logs", "report.log"),
        conda:
            ENV
        script:
            "../scripts/digits_report.py"
