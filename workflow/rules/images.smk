# Image metrics (amcli/score_images.py): any folder of generations holding a metadata.csv
# (file_name, prompt) -> <folder>/metrics/{scores.csv, metrics.csv, metrics.md}. Which metrics:
# config key `image_metrics` (a list; default below); weights from $AM_WEIGHTS or the HF cache,
# checked before any compute. Text-to-image runs write such folders; so can any user.
IMAGE_METRICS = config.get(
    "image_metrics", ["clipscore", "pickscore", "hpsv2.1", "imagereward", "dreamsim"]
)


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
    params:
        metrics=",".join(IMAGE_METRICS),
        env=SCORE_ENV,
    conda:
        ENV
    shell:
        "{params.env}python -m amcli.score_images {wildcards.folder} --metrics {params.metrics} "
        "--out $(dirname {output.csv}) > {log} 2>&1"
