"""Weights from ComfyUI's model folders, loaded under ComfyUI's model management: Hugging Face folders (BLIP,
CLIP, DINO) and controlnet_aux's OpenPose networks. Every module here is ComfyUI glue."""
