"""The layout the README's architecture map describes: pure modules import nothing of ComfyUI (only the
comfyui_* glue does), and no two modules share a name, so a stem in a traceback names one file."""
import ast
from collections import Counter

from conftest import PACK_DIR

COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "latent_preview",
                   "nodes", "execution", "server"}
PURE_PACKAGES = ("attention", "completion", "evaluation")


def imported_top_names(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_comfyui_glue_imports_comfyui():
    pure = [p for package in PURE_PACKAGES for p in (PACK_DIR / package).glob("*.py")
            if not p.name.startswith("comfyui_")]
    assert len(pure) >= 15
    offenders = {p.relative_to(PACK_DIR).as_posix(): sorted(imported_top_names(p) & COMFYUI_MODULES) for p in pure}
    assert {p: found for p, found in offenders.items() if found} == {}


def test_every_module_name_is_unique():
    stems = Counter(p.stem for folder in PURE_PACKAGES + ("model_files", "nodes")
                    for p in (PACK_DIR / folder).glob("*.py") if p.stem != "__init__")
    assert [stem for stem, count in stems.items() if count > 1] == []
