"""Text-to-image fine-tuning over diffusers components (imported only when used).

* :mod:`am.t2i.schedules`: diffusers schedulers as this library's schedules (the one place
  diffusers' timesteps and sigmas meet our time ``t``: noise at 0, data at 1).
* :mod:`am.t2i.denoisers`: ``UNet2DConditionModel`` (epsilon / v-prediction) and
  ``SD3Transformer2DModel`` as velocity models ``(z, t, cond) -> dz/dt`` in latent space.
* :mod:`am.t2i.testing`: tiny random pipelines in the real architectures, for tests.
"""
