"""Drive the real ComfyUI in-process: load this pack, build random-weight SD1.5 checkpoints, and run
API-format graphs through ComfyUI's own validator and executor. Used by tests and benchmarks."""
from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

# The UNet layouts ComfyUI's detection accepts as SD1.5 (model_channels 320, context_dim 768).
SD15_FULL_UNET = dict(
    model_channels=320, in_channels=4, out_channels=4, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
)
# Two levels, two res blocks each: 11 self-attention layers (encoder 0-3, middle 4, decoder 5-10),
# so the paper's default start_layer 10 is valid, and one step takes milliseconds at 64 px.
SD15_SMALL_UNET = dict(
    model_channels=320, in_channels=4, out_channels=4, num_res_blocks=[2, 2], channel_mult=[1, 2],
    transformer_depth=[1, 1, 1, 1], transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1, 1, 1],
)
COMMON_UNET = dict(use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False,
                   adm_in_channels=None, context_dim=768, num_heads=8, num_head_channels=-1,
                   use_linear_in_transformer=False, use_temporal_attention=False, use_temporal_resblock=False)

_STARTED = {}


PACK_NAME = "masactrl_suite"  # the folder name the README's git install uses


def register_pack(pack_dir: Path, name: str = PACK_NAME):
    """Make the pack importable as `masactrl_suite`, whatever its folder is called: the name ComfyUI gives it
    too when start_comfy loads it, so tests and ComfyUI share one copy of every module (and class)."""
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(pack_dir) / "__init__.py",
                                                  submodule_search_locations=[str(pack_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def start_comfy(comfy_path: Path, pack_dir: Path):
    """Import ComfyUI on the CPU with its built-in extra nodes and this pack; idempotent."""
    if "ns" in _STARTED:
        return _STARTED["ns"]
    sys.path.insert(0, str(comfy_path))
    logging.getLogger().setLevel(logging.ERROR)  # ComfyUI logs every model load at INFO
    import utils.install_util  # noqa: F401  (as main.py does: claims `utils` before comfy/utils.py can)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before anything imports comfy.model_management
    import comfy.model_management  # noqa: F401
    import execution
    import folder_paths
    import nodes

    work = Path(tempfile.mkdtemp(prefix="masactrl-comfy-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # test checkpoints are ~700 MB
    folder_paths.set_output_directory(str(work / "output"))
    folder_paths.set_temp_directory(str(work / "temp"))
    folder_paths.set_input_directory(str(work / "input"))  # loading the pack copies its example pictures there
    (work / "input").mkdir()
    folder_paths.add_model_folder_path("checkpoints", str(work / "checkpoints"), is_default=True)
    (work / "checkpoints").mkdir()
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(_load_pack_as(nodes, Path(pack_dir), work / "custom_nodes")):
        raise RuntimeError(f"ComfyUI could not load the pack at {pack_dir}; see the log above.")
    ns = SimpleNamespace(path=comfy_path, work=work, nodes=nodes, execution=execution,
                         folder_paths=folder_paths, checkpoints={})
    _STARTED["ns"] = ns
    return ns


async def _load_pack_as(nodes, pack_dir: Path, custom_nodes: Path) -> bool:
    """ComfyUI's own loader, given the pack as `custom_nodes/masactrl_suite` relative to the working folder: it
    names a module after the path it is given, so the pack is `masactrl_suite` there too (one import, as for
    a user whose ComfyUI loads the folder once). Modules the tests imported already are reused, not reloaded."""
    custom_nodes.mkdir(exist_ok=True)
    link = custom_nodes / PACK_NAME
    if not link.exists():
        link.symlink_to(pack_dir.resolve(), target_is_directory=True)
    here = os.getcwd()
    os.chdir(custom_nodes)
    try:
        return await nodes.load_custom_node(PACK_NAME)
    finally:
        os.chdir(here)


def schema_defaults(node_class) -> dict:
    """input name -> default of a V3 node's schema (inputs without a default are left out)."""
    return {i.id: i.default for i in node_class.define_schema().inputs if getattr(i, "default", None) is not None}


def call_node(ns, node_id: str, **inputs):
    """The result tuple of node_id's execute with its schema defaults, overridden by `inputs`."""
    node_class = ns.nodes.NODE_CLASS_MAPPINGS[node_id]
    return node_class.execute(**{**schema_defaults(node_class), **inputs}).result


def load_sd15(ns):
    """The random-weight SD1.5 checkpoint, loaded by ComfyUI's own CheckpointLoaderSimple."""
    nodes = ns.nodes
    name = make_sd15_checkpoint(ns)
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]
    return SimpleNamespace(comfy=ns, nodes=nodes, node=nodes.NODE_CLASS_MAPPINGS, name=name, model=model, clip=clip,
                           vae=vae, encode=lambda text: nodes.CLIPTextEncode().encode(clip, text)[0])


def init_random_(module, seed: int):
    """Seeded random weights that keep activations in range. comfy.ops layers skip torch's own init
    (their parameters start as uninitialised memory), so every parameter is written here."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:  # linear, conv and embedding weights: variance 1/fan_in
                p.copy_(torch.randn(p.shape, generator=generator) / p[0].numel() ** 0.5)
            elif name.endswith("weight"):  # norm scales
                p.fill_(1.0)
            else:
                p.zero_()
    return module


def build_sd15_model(unet: dict, device="cpu", dtype=None):
    """A random-weight SD1.5 BaseModel made with ComfyUI's own classes (no file)."""
    import torch
    import comfy.supported_models

    config = comfy.supported_models.SD15({**COMMON_UNET, **unet})
    if dtype is not None:
        config.set_inference_dtype(dtype, None)
    model = config.get_model({}, device=device)
    init_random_(model.diffusion_model, seed=0)
    with torch.no_grad():  # real SD zero-initialises the last conv; keep random eps small and stable
        model.diffusion_model.out[-1].weight.mul_(0.01)
    return config, model


def make_sd15_checkpoint(ns, unet: dict = SD15_SMALL_UNET, name="masactrl-test-sd15.safetensors"):
    """Save a random-weight SD1.5 checkpoint into the in-process ComfyUI's checkpoints folder."""
    if name in ns.checkpoints:
        return name
    save_sd15_checkpoint(ns.work / "checkpoints" / name, unet)
    ns.checkpoints[name] = True
    return name


def save_sd15_checkpoint(path, unet: dict = SD15_SMALL_UNET):
    """Save a random-weight SD1.5 checkpoint (UNet, CLIP-L, VAE) that CheckpointLoaderSimple loads.
    Needs ComfyUI importable (e.g. after start_comfy); `path` may be anywhere."""
    import torch
    import comfy.sd1_clip
    import comfy.utils
    from comfy.ldm.models.autoencoder import AutoencoderKL

    torch.manual_seed(0)
    config, model = build_sd15_model(unet, dtype=torch.float16)
    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float16)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    init_random_(clip, seed=1)
    init_random_(vae, seed=2)
    state = {}
    state.update({"model.diffusion_model." + k: v for k, v in model.diffusion_model.state_dict().items()})
    state.update(config.process_clip_state_dict_for_saving(clip.state_dict()))
    state.update({"first_stage_model." + k: v for k, v in vae.state_dict().items()})
    state = {k: v.to(torch.float16).contiguous() for k, v in state.items() if torch.is_floating_point(v)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file(state, str(path))
    return Path(path)


def save_sd15_controlnet(path, unet: dict = SD15_SMALL_UNET):
    """Save a random-weight SD1.5 ControlNet (comfy.cldm.cldm.ControlNet, 3-channel hint) matching the
    UNet layout `unet`, in the original .pth layout (keys under `control_model.`) when `path` ends in
    .pth, else as safetensors without prefix. ComfyUI's ControlNetLoader detects it from the weights."""
    import torch
    import comfy.cldm.cldm
    import comfy.ops
    import comfy.utils

    config = {**COMMON_UNET, **unet}
    config.pop("out_channels")
    torch.manual_seed(0)
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, **config)
    init_random_(net, seed=3)  # comfy.ops layers skip init: their reset_parameters does nothing
    with torch.no_grad():
        for p in net.parameters():  # keep the control residuals small, as a trained net's are
            p.mul_(0.05)
    state = {k: v.to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pth":
        torch.save({"control_model." + k: v for k, v in state.items()}, str(path))
    else:
        comfy.utils.save_torch_file(state, str(path))
    return path


def progress_updates(run) -> list[tuple]:
    """(value, total) of every ComfyUI progress-bar update while run() runs."""
    import comfy.utils

    seen, old_hook = [], comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **kw: seen.append((value, total)))
    try:
        run()
    finally:
        comfy.utils.set_progress_bar_global_hook(old_hook)
    return seen


def stops_when_interrupted(run) -> bool:
    """Whether run() raises ComfyUI's InterruptProcessingException while Cancel is pressed."""
    import comfy.model_management as mm

    mm.interrupt_current_processing(True)
    try:
        run()
    except mm.InterruptProcessingException:
        return True
    finally:
        mm.interrupt_current_processing(False)
    return False


class _Server:
    """The few members PromptExecutor uses of PromptServer."""
    client_id = None
    last_node_id = None

    def __init__(self):
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


def run_graph(ns, prompt: dict) -> dict:
    """Validate and execute an API-format graph; returns {node_id: ui output}. Raises with ComfyUI's
    own error message if validation or execution fails."""
    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(ns.execution.validate_prompt(prompt_id, prompt, None))
    if not valid[0]:
        raise ValueError(f"ComfyUI rejected the graph: {valid[1]} {valid[3]}")
    server = _Server()
    executor = ns.execution.PromptExecutor(server)  # a new executor: no results cached between runs
    executor.execute(prompt, prompt_id, {}, valid[2])
    if not executor.success:
        errors = [data for event, data in executor.status_messages if event == "execution_error"]
        raise RuntimeError(f"ComfyUI execution failed: {errors}")
    return executor.history_result["outputs"]


# Headless chromium for driving the real front end (Debian's chromium; never `playwright install`).
# A tiny random-weight BLIP captioner (tests/test_blip.py, and the example workflows' test server).
WORDS = ("a an the of photo photography picture dog cat woman man sitting standing on in with red blue green grass "
         "bench beach table and running shoes feet").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]  # [DEC]: BLIP's decoder start (bos)


def save_tiny_blip(path):
    """A BLIP with 2-layer, 32-wide vision and text transformers, 32 px images and a 35-word BERT vocabulary.
    Weights have fan-in variance so the image steers the caption; the special tokens other than [SEP] are never
    generated, so captions are words and their lengths can be counted in tokens."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    path.mkdir(parents=True)
    vocab = SPECIAL + [",", "."] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(path / "vocab.txt"), bos_token="[DEC]")
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(str(path))
    ids = {t: i for i, t in enumerate(vocab)}
    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    config = BlipConfig(text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=64,
                                         bos_token_id=ids["[DEC]"], pad_token_id=ids["[PAD]"],
                                         sep_token_id=ids["[SEP]"], eos_token_id=ids["[SEP]"]),
                        vision_config=dict(small, image_size=32, patch_size=8), projection_dim=32,
                        image_text_hidden_size=32)
    model = BlipForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=generator) / p.shape[-1] ** 0.5)
        bias = model.text_decoder.cls.predictions.decoder.bias
        bias[[ids[t] for t in SPECIAL if t != "[SEP]"]] = -1e4
        bias[ids["[SEP]"]] = 1.0
    model.save_pretrained(str(path))
    return path


def save_tiny_clip(path, comfy_path):
    """A CLIPModel with 2-layer, 32-wide text and vision towers, 32 px images and 16-dim embeddings, with
    CLIP's real BPE tokenizer (ComfyUI's copy in comfy/sd1_tokenizer)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(Path(comfy_path) / "comfy" / "sd1_tokenizer"))
    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(small, vocab_size=len(tokenizer), max_position_embeddings=77),
                        vision_config=dict(small, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(str(path))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(str(path))
    return Path(path)


def save_tiny_dino(path, version: int = 2):
    """A 2-layer, 32-wide DINO (v2: Dinov2Model; v1: ViTModel, as facebook/dino-vits16) for 32 px images."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])  # as the real configs
    torch.manual_seed(1)
    if version == 2:
        model = Dinov2Model(Dinov2Config(**small, mlp_ratio=2))
        processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, **imagenet)
    else:
        model = ViTModel(ViTConfig(**small, intermediate_size=37), add_pooling_layer=False)
        processor = ViTImageProcessor(size={"height": 32, "width": 32}, **imagenet)
    model.eval().save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return Path(path)


CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                  "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A real ComfyUI server in a subprocess, isolated under `base` (--base-directory): the pack is
    symlinked into base/custom_nodes, models/input/output/user and the database live under base.
    Use as a context manager, or call start() and stop()."""

    def __init__(self, comfy_path: Path, pack_dir: Path, base: Path, pack_name: str = "masactrl-suite",
                 extra_args=(), python=sys.executable):
        self.comfy_path, self.pack_dir, self.base = Path(comfy_path), Path(pack_dir), Path(base)
        self.pack_name = pack_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args, self.python = list(extra_args), python
        self.proc = None
        self.log_path = self.base / "server.log"

    def start(self, timeout=120.0):
        custom_nodes = self.base / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / self.pack_name
        if not link.exists():
            link.symlink_to(self.pack_dir, target_is_directory=True)
        for sub in ("models/checkpoints", "models/controlnet", "input", "output"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--database-url", f"sqlite:///{self.base / 'db.sqlite'}",
               "--disable-api-nodes", "--disable-auto-launch", *self.extra_args]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_path, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} at start-up:\n{self.log_tail()}")
            try:
                self.get("/api/system_stats", timeout=2)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, chars=4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def request(self, path, data=None, timeout=30, method=None):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:  # ComfyUI explains a rejected prompt in the body
            raise RuntimeError(f"{method or 'GET'} {path}: HTTP {error.code}: {error.read()[:4000]!r}") from None
        return json.loads(raw) if raw.strip() else None

    def get(self, path, timeout=30):
        return self.request(path, timeout=timeout)

    def post(self, path, data, timeout=30):
        return self.request(path, data=data, timeout=timeout, method="POST")
