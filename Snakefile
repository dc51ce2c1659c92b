# Root Snakefile: the pipeline lives in workflow/.
include: "workflow/Snakefile"
