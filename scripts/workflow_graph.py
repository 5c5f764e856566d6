"""What the example workflows' graph builders (example_graphs_*.py, export_example_workflows.py) share: the
node builder, the colours of prompt and note nodes, and the model files the examples pick.

A graph is {"nodes": [node(...), ...], "links": [(from_key, output, to_key, input), ...]}, outputs and inputs
by name; export_example_workflows.py creates it in the real front end and exports it."""
from __future__ import annotations

CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
OPENPOSE_CONTROLNET = "control_v11p_sd15_openpose.pth"

POSITIVE = {"color": "#232", "bgcolor": "#353"}  # the colours ComfyUI's default workflow gives prompts
NEGATIVE = {"color": "#322", "bgcolor": "#533"}
NOTE = {"color": "#432", "bgcolor": "#653"}


def node(key, type_, pos, widgets=None, title=None, size=None, **extra):
    """One node: `key` names it in the links, widget values by name, optional title, size and colours
    (color=, bgcolor=, as in POSITIVE); without a size it gets the size the front end computes for it."""
    return {"key": key, "type": type_, "pos": pos, "widgets": widgets or {}, "title": title, "size": size, **extra}
