"""Evaluation: alignment scores from embeddings, schedule-sweep settings, tables and plots, in pure
torch/PIL; comfyui_sweep.py is the ComfyUI glue that samples, decodes and scores one run per setting."""
