# The digits benchmark (config key `digits`, amcli/digits.py): pretrain the base and the
# classifiers once (cached), the importance-sampling reference, the base at each guidance
# weight, methods x reward scales x seeds fine-tuning runs, then the table, the Pareto plots
# and the sample grid in <results_dir>/digits/. Validated when the DAG is built.
from amcli.digits import parse_digits_config
from amcli.config import ConfigError

DIGITS = config.get("digits")
if DIGITS is not None:
    try:
        DIGITS_CFG = parse_digits_config(DIGITS)
    except ConfigError as e:
        raise ValueError(f"invalid workflow config: {e}") from None
    DRUNS = RUNS + "/digits"
    DRES = RESULTS + "/digits"
    DIGITS_RUNS = [
        f"{DRUNS}/{m}/lam{lam_tag(lam)}/seed{s}"
        for m in DIGITS_CFG.methods
        for lam in DIGITS_CFG.reward_scales
        for s in DIGITS_CFG.seeds
    ]
    DIGITS_GUIDANCE = [1.0, *DIGITS_CFG.guidance]
    DIGITS_OUTPUTS = [
        f"{DRES}/table.csv",
        f"{DRES}/table.md",
        f"{DRES}/pareto.png",
        f"{DRES}/pareto.pdf",
        f"{DRES}/samples.png",
    ]
else:
    DIGITS_OUTPUTS = []


if DIGITS is not None:

    rule digits_config:
        output:
            DRUNS + "/digits.yaml",
        priority: 20
        params:
            section={**DIGITS, "cache": DRUNS + "/assets"},
        run:
            import yaml

            Path(output[0]).write_text(yaml.safe_dump(params.section, sort_keys=False))

    rule digits_pretrain:
        input:
            DRUNS + "/digits.yaml",
        output:
            DRUNS + "/pretrain.json",
        log:
            DRUNS + "/pretrain.log",
        priority: 20  # every other digits job waits for it
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits pretrain {input} > {output}.tmp 2> {log} && mv {output}.tmp {output}"

    rule digits_reference:
        input:
            cfg=DRUNS + "/digits.yaml",
            pretrained=DRUNS + "/pretrain.json",
        output:
            DRUNS + "/reference.json",
        log:
            DRUNS + "/reference.log",
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits reference {input.cfg} --out {output} > /dev/null 2> {log}"

    rule digits_base:
        input:
            cfg=DRUNS + "/digits.yaml",
            pretrained=DRUNS + "/pretrain.json",
        output:
            DRUNS + "/base/guidance{w}.json",
        log:
            DRUNS + "/base/guidance{w}.log",
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits base {input.cfg} --guidance {wildcards.w} --out {output} > /dev/null 2> {log}"

    rule digits_run:
        input:
            cfg=DRUNS + "/digits.yaml",
            pretrained=DRUNS + "/pretrain.json",
        output:
            DRUNS + "/{method}/lam{lam}/seed{seed}/eval.json",
        log:
            DRUNS + "/{method}/lam{lam}/seed{seed}/run.log",
        wildcard_constraints:
            method="[a-z_]+",
            seed=r"\d+",
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m amcli.digits run {input.cfg} --method {wildcards.method}"
            " --reward-scale {wildcards.lam} --seed {wildcards.seed} --run-dir $(dirname {output}) > /dev/null 2> {log}"

    rule digits_report:
        input:
            runs=[d + "/eval.json" for d in DIGITS_RUNS],
            base=[f"{DRUNS}/base/guidance{lam_tag(w)}.json" for w in DIGITS_GUIDANCE],
            reference=DRUNS + "/reference.json",
            pretrained=DRUNS + "/pretrain.json",
        output:
            csv=f"{DRES}/table.csv",
            md=f"{DRES}/table.md",
            png=f"{DRES}/pareto.png",
            pdf=f"{DRES}/pareto.pdf",
            samples=f"{DRES}/samples.png",
        script:
            "scripts/digits_report.py"
