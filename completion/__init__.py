"""Photo completion: the canvas (extend, masks, paste back), grid tiles, RePaint's jump schedule and loop, and
the OpenPose keypoint format, in pure torch/numpy; the comfyui_* modules are the ComfyUI glue (grid sampling
wrapper, RePaint sampler)."""
