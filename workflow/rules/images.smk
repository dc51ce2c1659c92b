# Image metrics (amcli/score_images.py): any folder of generations holding a metadata.csv
# (file_name, prompt) -> <folder>/metrics/{scores.csv, metrics.csv, metrics.md}. Which metrics:
# config key `image_metrics` (a list; default below); weights from $AM_WEIGHTS or the HF cache,
# checked before any compute. Text-to-image runs write such folders; so can any user.
IMAGE_METRICS = config.get(
    "image_metrics", ["clipscore", "pickscore", "hpsv2.1", "imagereward", "dreamsim"]
)
# scoring runs where the text-to-image jobs run: on a GPU when they ask for one
SCORE_GPUS = (config.get("t2i") or {}).get("gpus", 0)


rule score_images:
    input:
        os.path.join("{folder}", "metadata.csv"),
    output:
        csv=os.path.join("{folder}", "metrics", "metrics.csv"),
        md=os.path.join("{folder}", "metrics", "metrics.md"),
        scores=os.path.join("{folder}", "metrics", "scores.csv"),
    log:
        os.path.join("{folder}", "metrics", "score_images.log"),
    threads: 2
    resources:
        mem_mb=16000,
        gpu=SCORE_GPUS,
    params:
        metrics=",".join(IMAGE_METRICS),
        device="cuda" if SCORE_GPUS else "cpu",
        env=SCORE_ENV,
    conda:
        ENV
    shell:
        "{params.env}python -m amcli.score_images {wildcards.folder} --metrics {params.metrics} --device {params.device} "
        "--out $(dirname {output.csv}) > {log} 2>&1"
