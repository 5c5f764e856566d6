"""What the example workflows' graph builders (example_graphs_*.py, export_example_workflows.py) share: the
node builder, the colours of prompt and note nodes, and the model files the examples pick.

A graph is {"nodes": [node(...), ...], "links": [(from_key, output, to_key, input), ...]}, outputs and inputs
by name; export_example_workflows.py creates it in the real front end and exports it."""
from __future__ import annotations

CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
# The fp16 .safetensors conversion of lllyasviel's control_v11p_sd15_openpose.pth: front end 1.27's Missing
# Models dialog offers downloads only of .safetensors/.sft files from huggingface.co or civitai.com.
OPENPOSE_CONTROLNET = "control_v11p_sd15_openpose_fp16.safetensors"
# Where each model file a template loads comes from, in the form of ComfyUI's own templates' node
# properties.models: the front end lists the missing ones with a download button when a template opens.
MODEL_DOWNLOADS = {
    CHECKPOINT: {"url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                        f"{CHECKPOINT}", "directory": "checkpoints"},
    OPENPOSE_CONTROLNET: {"url": "https://huggingface.co/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/"
                                 f"main/{OPENPOSE_CONTROLNET}", "directory": "controlnet"},
    # The diffusion-transformer examples, from where ComfyUI's own Flux and SD3.5 templates download them.
    "flux1-dev.safetensors": {"url": "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors",
                              "directory": "diffusion_models"},
    "clip_l.safetensors": {"url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
                                  "clip_l.safetensors", "directory": "text_encoders"},
    "t5xxl_fp16.safetensors": {"url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
                                      "t5xxl_fp16.safetensors", "directory": "text_encoders"},
    "flux1-fill-dev.safetensors": {"url": "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/split_files/"
                                          "diffusion_models/flux1-fill-dev.safetensors",
                                   "directory": "diffusion_models"},
    "ae.safetensors": {"url": "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/"
                              "split_files/vae/ae.safetensors", "directory": "vae"},
    "sd3.5_large_fp8_scaled.safetensors": {"url": "https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/"
                                                  "main/sd3.5_large_fp8_scaled.safetensors",
                                           "directory": "checkpoints"},
}

POSITIVE = {"color": "#232", "bgcolor": "#353"}  # the colours ComfyUI's default workflow gives prompts
NEGATIVE = {"color": "#322", "bgcolor": "#533"}
NOTE = {"color": "#432", "bgcolor": "#653"}


def node(key, type_, pos, widgets=None, title=None, size=None, **extra):
    """One node: `key` names it in the links, widget values by name, optional title, size and colours
    (color=, bgcolor=, as in POSITIVE); without a size it gets the size the front end computes for it.
    A widget that picks a file of MODEL_DOWNLOADS gives the node its properties.models entry."""
    models = [{"name": value, **MODEL_DOWNLOADS[value]} for value in (widgets or {}).values()
              if isinstance(value, str) and value in MODEL_DOWNLOADS]
    return {"key": key, "type": type_, "pos": pos, "widgets": widgets or {}, "title": title, "size": size,
            "models": models, **extra}
