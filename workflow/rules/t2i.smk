# Text-to-image (config key `t2i`; amcli/t2i.py): for each method, a run config from the
# text-to-image config file `t2i.config` with that method's section -> fine-tune -> sample the
# eval prompts (and the base model once) -> score_images (workflow/rules/images.smk) -> one table
# in <results_dir>/t2i/. `t2i.tiny: sd15|sd3|flux` builds a tiny random pipeline and tiny scorer
# weights first (smoke runs, tests: no downloads); `t2i.gpus`: GPUs per fine-tuning job.
from amcli.config import ConfigError
from amcli.t2i_config import parse_t2i_config
from amcli.t2i_runs import t2i_run_config

T2I = config.get("t2i")
T2I_OUTPUTS = []


if T2I is not None:
    TRUNS = os.path.join(RUNS, "t2i")
    TRES = os.path.join(RESULTS, "t2i")
    T2I_METHODS = list(T2I["methods"])
    T2I_MODEL = os.path.join(TRUNS, "tiny_model")
    T2I_CONFIGS = {
        m: t2i_run_config(T2I, m, T2I_MODEL if T2I.get("tiny") else None, root=ROOT)
        for m in T2I_METHODS
    }
    for _m, _cfg in T2I_CONFIGS.items():  # every run config checked before any job
        try:
            parse_t2i_config(_cfg)
        except ConfigError as e:
            raise ValueError(f"invalid t2i config for method {_m}: {e}") from None
    T2I_TINY_INPUTS = (
        {
            "model": os.path.join(T2I_MODEL, "model_index.json"),
            "weights": os.path.join(TRUNS, "tiny_weights", "aesthetic", "sac+logos+ava1-l14-linearMSE.pth"),
        }
        if T2I.get("tiny")
        else {}
    )
    T2I_OUTPUTS = [os.path.join(TRES, "table.csv"), os.path.join(TRES, "table.md")]

    localrules:
        t2i_config,
        t2i_table,

    rule t2i_tiny_model:
        output:
            os.path.join(T2I_MODEL, "model_index.json"),
        log:
            os.path.join(TRUNS, "tiny_model.log"),
        params:
            family=T2I.get("tiny"),
        conda:
            ENV
        shell:
            "python -m amcli.t2i make-tiny {params.family} $(dirname {output}) > {log} 2>&1"

    rule t2i_tiny_weights:
        output:
            os.path.join(TRUNS, "tiny_weights", "aesthetic", "sac+logos+ava1-l14-linearMSE.pth"),
        log:
            os.path.join(TRUNS, "tiny_weights.log"),
        params:
            directory=os.path.join(TRUNS, "tiny_weights"),
        conda:
            ENV
        shell:
            "python -m amcli.resources --make-tiny {params.directory} > {log} 2>&1"

    rule t2i_config:
        output:
            os.path.join(TRUNS, "{method}", "t2i.yaml"),
        log:
            os.path.join(TRUNS, "{method}", "t2i_config.log"),
        params:
            data=lambda w: T2I_CONFIGS[w.method],
        conda:
            ENV
        script:
            "../scripts/write_yaml.py"

    rule t2i_finetune:
        input:
            cfg=os.path.join(TRUNS, "{method}", "t2i.yaml"),
            **T2I_TINY_INPUTS,
        output:
            os.path.join(TRUNS, "{method}", "result.json"),
        log:
            os.path.join(TRUNS, "{method}", "finetune.log"),
        threads: 2
        resources:
            gpu=T2I.get("gpus", 0),
            mem_mb=T2I.get("mem_mb", 8000),
        params:
            env=SCORE_ENV,
        conda:
            ENV
        shell:
            "{params.env}python -m amcli.t2i finetune {input.cfg} --run-dir $(dirname {output}) "
            "--restart-if-changed > {log} 2>&1"

    rule t2i_sample:
        input:
            cfg=os.path.join(TRUNS, "{method}", "t2i.yaml"),
            result=os.path.join(TRUNS, "{method}", "result.json"),
        output:
            os.path.join(TRUNS, "{method}", "samples", "metadata.csv"),
        log:
            os.path.join(TRUNS, "{method}", "sample.log"),
        threads: 2
        resources:
            gpu=T2I.get("gpus", 0),
        conda:
            ENV
        shell:
            "python -m amcli.t2i sample {input.cfg} --run-dir $(dirname {input.result}) "
            "--out $(dirname {output}) > {log} 2>&1"

    rule t2i_sample_base:
        input:
            cfg=os.path.join(TRUNS, T2I_METHODS[0], "t2i.yaml"),
            **T2I_TINY_INPUTS,
        output:
            os.path.join(TRUNS, "base", "samples", "metadata.csv"),
        log:
            os.path.join(TRUNS, "base", "sample.log"),
        threads: 2
        resources:
            gpu=T2I.get("gpus", 0),
        conda:
            ENV
        shell:
            "python -m amcli.t2i sample {input.cfg} --out $(dirname {output}) > {log} 2>&1"

    rule t2i_table:
        input:
            [
                os.path.join(TRUNS, m, "samples", "metrics", "metrics.csv")
                for m in ["base", *T2I_METHODS]
            ],
        output:
            csv=os.path.join(TRES, "table.csv"),
            md=os.path.join(TRES, "table.md"),
        log:
            os.path.join(TRES, "logs", "table.log"),
        conda:
            ENV
        script:
            "../scripts/t2i_table.py"
