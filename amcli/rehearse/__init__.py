"""Random-weight checkpoints in the model hub's exact folder layout, written offline.

A rehearsal of the real run: everything (tokenizer files, ``model_index.json``, subfolders,
``variant="fp16"`` files, sharded safetensors) is as the hub publishes it; only the numbers the
weights produce differ. ``tokenizer`` builds the CLIP tokenizer files from open_clip's BPE
vocabulary; ``pipelines`` writes SD 1.5, SD 3.5 medium and reduced-depth Flux folders.
"""
