"""attach_masactrl (attention/diffusers_processors.py) against an independent reference of MasaCtrl.

The reference below is written from the published algorithm (Cao et al., ICCV 2023; the
MutualSelfAttentionControl / AttentionBase classes of TencentARC/MasaCtrl), not from our code:
it counts attention calls to find the step and the layer, materialises softmax(q k^T * scale)
with einsum, and in active steps/layers gives every image of each CFG half the keys and values of
batch item 0 (the source). Both run on the same tiny random-weight UNet with SD1.5's block pattern
(16 self-attention layers) inside the same manual DDIM loop, so any difference comes from the
attention alone. Everything runs in float64 on the CPU, so rounding (~1e-13 here) cannot hide a
real difference and the tolerance can be strict. Runs in well under a minute.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from masactrl_suite.attention import MutualAttentionSchedule, ScheduleError
from masactrl_suite.attention.diffusers_processors import attach_masactrl

GUIDANCE = 7.5
TEXT_DIM = 32  # cross_attention_dim of the tiny UNet = hidden size of the tiny CLIP text model
LATENT_SIZE = 16  # smaller latents make this random UNet's sampling chaotic (1e-7 in, 1e-1 out)
DTYPE = torch.float64
# Adapter vs reference differ by ~1e-13 in float64. Far below the 1e-4 one would accept in float32,
# and it has to be: dropping MasaCtrl at the final step alone changes the latents by only ~1e-5.
TOLERANCE = 1e-8
# SD1.5's scheduler_config.json (DDIM as MasaCtrl's playground uses it).
SD15_DDIM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1)


# ----------------------------------------------------------------------------------------------
# The tiny model and the sampling loop
# ----------------------------------------------------------------------------------------------

def build_tiny_sd15_unet() -> UNet2DConditionModel:
    """SD1.5's block pattern at toy width: 3 cross-attention down blocks + 1 plain one, a
    cross-attention mid block, 1 plain up block + 3 cross-attention ones; layers_per_block=2 gives
    2*3 + 1 + 3*3 = 16 transformer blocks, i.e. MasaCtrl's 16 self-attention layers."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=2,  # diffusers reads this (SD1.x naming quirk) as the number of heads
        norm_num_groups=32,
    )
    with torch.no_grad():
        # Real SD zero-initialises conv_out: keep the random eps small (std ~0.1 instead of ~0.3)
        # so CFG at 7.5 over 50 steps stays tame.
        unet.conv_out.weight.mul_(0.3)
        unet.conv_out.bias.mul_(0.3)
        # Random init gives near-uniform self-attention, under which attending to the source's
        # keys/values barely differs from attending to one's own. Trained SD attends sharply;
        # logits 9x larger make MasaCtrl's effect on the target clearly measurable.
        for name, module in unet.named_modules():
            if name.endswith("attn1"):
                module.to_q.weight.mul_(3.0)
                module.to_k.weight.mul_(3.0)
    return unet.eval().requires_grad_(False).double()


def sd15_ddim(num_steps: int) -> DDIMScheduler:
    scheduler = DDIMScheduler(**SD15_DDIM)
    scheduler.set_timesteps(num_steps)
    return scheduler


@torch.no_grad()
def ddim_sample_with_cfg(unet, num_steps: int, start_latents, uncond, cond) -> torch.Tensor:
    """Deterministic DDIM (eta 0) with classifier-free guidance; the UNet batch is
    [uncond images..., cond images...], as in MasaCtrl's pipeline and diffusers'."""
    scheduler = sd15_ddim(num_steps)
    latents = start_latents * scheduler.init_noise_sigma
    text = torch.cat([uncond, cond])
    for t in scheduler.timesteps:
        eps_uncond, eps_cond = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample.chunk(2)
        eps = eps_uncond + GUIDANCE * (eps_cond - eps_uncond)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents


# ----------------------------------------------------------------------------------------------
# The independent reference: MasaCtrl as published
# ----------------------------------------------------------------------------------------------

class ReferenceMasaCtrlProcessor:
    """One instance is installed on EVERY attention module of the UNet (self and cross), like
    MasaCtrl's editor. It counts calls: within one UNet call the transformer blocks run
    attn1 (self), attn2 (cross) in order down, mid, up, so the self-attention layer is
    cur_att_layer // 2, and after all attention calls of a UNet call the step advances."""

    def __init__(self, num_att_layers: int, step_idx, layer_idx):
        self.num_att_layers = num_att_layers  # self + cross modules: 32 for SD1.5
        self.step_idx, self.layer_idx = set(step_idx), set(layer_idx)
        self.cur_step = 0
        self.cur_att_layer = 0
        self.mutual_calls = 0  # how often the mutual branch ran, so a test can tell it did

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        assert attention_mask is None and not attn.residual_connection and attn.rescale_output_factor == 1
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        h = attn.heads
        q, k, v = (self.to_batch_heads(x, h) for x in (attn.to_q(hidden_states), attn.to_k(context),
                                                       attn.to_v(context)))
        if is_cross or self.cur_step not in self.step_idx or self.cur_att_layer // 2 not in self.layer_idx:
            out = self.attention(q, k, v, attn.scale)
            out = self.from_batch_heads(out, h)
        else:
            self.mutual_calls += 1
            qu, qc = q.chunk(2)
            ku, kc = k.chunk(2)
            vu, vc = v.chunk(2)
            # rows are "(b h)": the first h rows of each half are item 0, the source
            out = torch.cat([self.attend_to_source(qu, ku[:h], vu[:h], h, attn.scale),
                             self.attend_to_source(qc, kc[:h], vc[:h], h, attn.scale)])
        out = attn.to_out[1](attn.to_out[0](out))
        self.cur_att_layer += 1
        if self.cur_att_layer == self.num_att_layers:
            self.cur_att_layer = 0
            self.cur_step += 1
        return out

    @staticmethod
    def to_batch_heads(x, h):  # "b n (h d) -> (b h) n d"
        b, n, hd = x.shape
        return x.reshape(b, n, h, hd // h).permute(0, 2, 1, 3).reshape(b * h, n, hd // h)

    @staticmethod
    def from_batch_heads(x, h):  # "(b h) n d -> b n (h d)"
        bh, n, d = x.shape
        return x.reshape(bh // h, h, n, d).permute(0, 2, 1, 3).reshape(bh // h, n, h * d)

    @staticmethod
    def attention(q, k, v, scale):
        sim = torch.einsum("b i d, b j d -> b i j", q, k) * scale
        return torch.einsum("b i j, b j d -> b i d", sim.softmax(-1), v)

    @classmethod
    def attend_to_source(cls, q, k_src, v_src, h, scale):
        """MasaCtrl's attn_batch: all images' queries, stacked along the tokens, against the
        source's keys and values ("(b h) n d -> h (b n) d")."""
        b = q.shape[0] // h
        n, d = q.shape[1], q.shape[2]
        q = q.reshape(b, h, n, d).permute(1, 0, 2, 3).reshape(h, b * n, d)
        out = cls.attention(q, k_src, v_src, scale)  # k_src, v_src: [h, n, d]
        return out.reshape(h, b, n, d).permute(1, 2, 0, 3).reshape(b, n, h * d)


@contextlib.contextmanager
def reference_masactrl(unet, total_steps, start_step=4, start_layer=10, step_idx=None, layer_idx=None):
    """MasaCtrl's defaults: steps start_step..total_steps-1, layers start_layer..15."""
    originals = unet.attn_processors
    editor = ReferenceMasaCtrlProcessor(
        num_att_layers=len(originals),
        step_idx=range(start_step, total_steps) if step_idx is None else step_idx,
        layer_idx=range(start_layer, 16) if layer_idx is None else layer_idx)
    unet.set_attn_processor(editor)
    try:
        yield editor
    finally:
        unet.set_attn_processor(originals)


# ----------------------------------------------------------------------------------------------
# Fixtures: one model, one prompt pair, one starting noise, plain sampling cached per step count
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet():
    return build_tiny_sd15_unet()


@pytest.fixture(autouse=True)
def unet_left_as_found(unet):
    """The UNet is shared by the module: whatever a failing test leaves attached is undone here, so
    one failure cannot cascade into the others."""
    processors = unet.attn_processors
    yield
    unet.set_attn_processor(processors)
    unet._forward_pre_hooks.clear()


@pytest.fixture(scope="module")
def prompts():
    """Random stand-ins for the text encoder's output: one uncond ("") embedding shared by both
    images, and a different cond embedding for the source and the target prompt."""
    g = torch.Generator().manual_seed(1)
    uncond = torch.randn(1, 77, TEXT_DIM, generator=g, dtype=DTYPE).expand(2, -1, -1)
    cond = torch.randn(2, 77, TEXT_DIM, generator=g, dtype=DTYPE)
    return uncond, cond


@pytest.fixture(scope="module")
def start_noise():
    """The same starting noise for source and target, as in MasaCtrl's playground."""
    g = torch.Generator().manual_seed(2)
    return torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=g, dtype=DTYPE).expand(2, -1, -1, -1)


@pytest.fixture(scope="module")
def sample(unet, prompts, start_noise):
    """sample(num_steps): DDIM + CFG from the shared noise and prompts with whatever is attached."""
    def run(num_steps):
        return ddim_sample_with_cfg(unet, num_steps, start_noise, *prompts)
    return run


@pytest.fixture(scope="module")
def plain(sample):
    cache = {}

    def get(num_steps):
        if num_steps not in cache:
            cache[num_steps] = sample(num_steps)
        return cache[num_steps]
    return get


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

def test_tiny_unet_has_sd15_layout(unet):
    self_attention = [name for name in unet.attn_processors if name.endswith("attn1.processor")]
    assert len(self_attention) == 16 and len(unet.attn_processors) == 32


@pytest.mark.parametrize("num_steps", [50, 10])
def test_default_schedule_matches_reference(unet, sample, plain, num_steps):
    with reference_masactrl(unet, num_steps) as editor:
        expected = sample(num_steps)
    assert editor.mutual_calls == (num_steps - 4) * 6  # steps 4.. x layers 10..15: it really ran

    handle = attach_masactrl(unet, MutualAttentionSchedule(), timesteps=sd15_ddim(num_steps).timesteps, chunks=2)
    try:
        got = sample(num_steps)
    finally:
        handle.remove()

    assert torch.isfinite(got).all()
    diff = max_diff(got, expected)
    assert diff <= TOLERANCE, f"adapter vs reference MasaCtrl: max |diff| {diff:.3g}"
    # Not vacuous: MasaCtrl moved the target far more than the tolerance ...
    assert max_diff(got[1], plain(num_steps)[1]) > 1e-3
    # ... and left the source's path alone (it attends to its own keys and values).
    assert max_diff(got[0], plain(num_steps)[0]) <= TOLERANCE


@pytest.mark.parametrize("schedule, step_idx, layer_idx", [
    # only the final step: the step of the last timestep must be counted as the last step
    (MutualAttentionSchedule(start_step=9), [9], range(10, 16)),
    # a step window with an interval, and a layer window spanning encoder (3-5), middle (6) and
    # decoder (7): checks that layers are numbered down, mid, up
    (MutualAttentionSchedule(start_step=2, end_step=7, step_interval=2, start_layer=3, end_layer=7),
     [2, 4, 6], range(3, 8)),
    # parts: leave the middle block's layer (6) out
    (MutualAttentionSchedule(start_step=0, start_layer=3, end_layer=7, parts=("encoder", "decoder")),
     range(10), [3, 4, 5, 7]),
], ids=["last-step-only", "step-and-layer-window", "without-middle"])
def test_other_schedules_match_reference(unet, sample, plain, schedule, step_idx, layer_idx):
    num_steps = 10
    with reference_masactrl(unet, num_steps, step_idx=step_idx, layer_idx=layer_idx) as editor:
        expected = sample(num_steps)
    assert editor.mutual_calls == len(list(step_idx)) * len(list(layer_idx))

    with attach_masactrl(unet, schedule, timesteps=sd15_ddim(num_steps).timesteps, chunks=2):
        got = sample(num_steps)

    diff = max_diff(got, expected)
    assert diff <= TOLERANCE, f"adapter vs reference MasaCtrl: max |diff| {diff:.3g}"
    assert max_diff(got[1], plain(num_steps)[1]) > 100 * TOLERANCE


def test_start_step_past_last_step_is_plain_sampling(unet, sample, plain):
    with attach_masactrl(unet, MutualAttentionSchedule(start_step=10), timesteps=sd15_ddim(10).timesteps,
                         chunks=2):
        got = sample(10)
    assert torch.equal(got, plain(10))


def test_remove_restores_the_unet(unet, sample, plain):
    before = unet.attn_processors
    handle = attach_masactrl(unet, MutualAttentionSchedule(start_step=0), timesteps=sd15_ddim(10).timesteps,
                             chunks=2)
    patched = unet.attn_processors
    assert sum(patched[name] is not before[name] for name in before) == 6  # layers 10..15 only
    assert len(unet._forward_pre_hooks) == 1

    handle.remove()
    after = unet.attn_processors
    assert all(after[name] is before[name] for name in before)
    assert len(unet._forward_pre_hooks) == 0
    assert torch.equal(sample(10), plain(10))
    handle.remove()  # a second remove is harmless


def test_bare_unet_needs_timesteps_and_chunks(unet):
    before = unet.attn_processors
    with pytest.raises(ValueError, match="timesteps"):
        attach_masactrl(unet, MutualAttentionSchedule(), chunks=2)
    with pytest.raises(ValueError, match="chunks"):
        attach_masactrl(unet, MutualAttentionSchedule(), timesteps=sd15_ddim(10).timesteps)
    assert unet.attn_processors == before and not unet._forward_pre_hooks


def test_start_layer_past_the_last_layer_is_rejected(unet):
    before = unet.attn_processors
    with pytest.raises(ScheduleError, match="start_layer"):
        attach_masactrl(unet, MutualAttentionSchedule(start_layer=16), timesteps=sd15_ddim(10).timesteps,
                        chunks=2)
    assert unet.attn_processors == before and not unet._forward_pre_hooks  # nothing half-attached


def test_sigma_range_is_rejected(unet):
    """A sigma range (ComfyUI's percents) cannot be located among diffusers timesteps."""
    with pytest.raises(ValueError, match="sigma_range"):
        attach_masactrl(unet, MutualAttentionSchedule(sigma_range=(14.6, 0.5)), timesteps=sd15_ddim(10).timesteps,
                        chunks=2)


# ----------------------------------------------------------------------------------------------
# Pipelines that do not state whether they run CFG: the number of chunks is never guessed
# ----------------------------------------------------------------------------------------------

class CustomLoopPipeline:
    """What attach_masactrl sees of a pipeline driven by its own sampling loop, as the reference's
    MasaCtrlPipeline is: a unet, a scheduler and diffusers' own do_classifier_free_guidance property,
    which reads _guidance_scale, set only by StableDiffusionPipeline.__call__ (so here it raises)."""
    do_classifier_free_guidance = StableDiffusionPipeline.do_classifier_free_guidance

    def __init__(self, unet, num_steps):
        self.unet, self.scheduler = unet, sd15_ddim(num_steps)


class PipelineWithoutCfgProperty:
    def __init__(self, unet, num_steps):
        self.unet, self.scheduler = unet, sd15_ddim(num_steps)


@pytest.fixture(scope="module")
def reference_10_steps(unet, sample):
    with reference_masactrl(unet, 10):
        return sample(10)


def test_custom_loop_pipeline_needs_chunks_then_matches_reference(unet, sample, reference_10_steps):
    pipe = CustomLoopPipeline(unet, 10)
    with pytest.raises(AttributeError):
        pipe.do_classifier_free_guidance  # noqa: B018  (what a getattr(pipe, ..., False) would hide)
    with attach_masactrl(pipe, MutualAttentionSchedule()):
        with pytest.raises(ValueError, match=r"CustomLoopPipeline.do_classifier_free_guidance raised "
                                             r"AttributeError.*custom sampling loop. Pass chunks= .*2 when"):
            sample(10)
    with attach_masactrl(pipe, MutualAttentionSchedule(), chunks=2):
        got = sample(10)
    diff = max_diff(got, reference_10_steps)
    assert diff <= TOLERANCE, f"custom-loop pipeline, chunks=2 vs reference MasaCtrl: max |diff| {diff:.3g}"
    # Not vacuous: one chunk (the adapter's old silent guess) gives every row the uncond source's keys and values.
    with attach_masactrl(pipe, MutualAttentionSchedule(), chunks=1):
        assert max_diff(sample(10), reference_10_steps) > 1e-3


def test_pipeline_without_cfg_property_needs_chunks(unet, sample, reference_10_steps):
    pipe = PipelineWithoutCfgProperty(unet, 10)
    before = unet.attn_processors
    with pytest.raises(ValueError, match="PipelineWithoutCfgProperty has no do_classifier_free_guidance.*chunks="):
        attach_masactrl(pipe, MutualAttentionSchedule())
    assert unet.attn_processors == before and not unet._forward_pre_hooks  # nothing half-attached
    with attach_masactrl(pipe, MutualAttentionSchedule(), chunks=2):
        assert max_diff(sample(10), reference_10_steps) <= TOLERANCE


def test_chunks_contradicting_the_pipeline_or_the_batch_are_refused(unet, sample):
    pipe = CustomLoopPipeline(unet, 10)
    pipe._guidance_scale = GUIDANCE  # as StableDiffusionPipeline.__call__ sets it: the pipeline now states 2
    with attach_masactrl(pipe, MutualAttentionSchedule(), chunks=1):
        with pytest.raises(ValueError, match="chunks=1, but the pipeline's do_classifier_free_guidance says 2"):
            sample(10)
    with attach_masactrl(unet, MutualAttentionSchedule(), timesteps=sd15_ddim(10).timesteps, chunks=2):
        with pytest.raises(ValueError, match="UNet batch of 3 does not split into 2 CFG chunk.*chunks="):
            unet(torch.zeros(3, 4, LATENT_SIZE, LATENT_SIZE, dtype=DTYPE), 1,
                 encoder_hidden_states=torch.zeros(3, 77, TEXT_DIM, dtype=DTYPE))
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="chunks is .*Pass chunks="):
            attach_masactrl(pipe, MutualAttentionSchedule(), chunks=bad)


# ----------------------------------------------------------------------------------------------
# Through a real StableDiffusionPipeline, built offline from tiny parts
# ----------------------------------------------------------------------------------------------

# ComfyUI ships openai/clip-vit-large-patch14's tokenizer files (same $COMFYUI_PATH default as conftest).
SD1_TOKENIZER = Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser() / "comfy" / "sd1_tokenizer"


def build_tiny_pipeline(unet):
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # ComfyUI's tokenizer_config.json says model_max_length 8192; SD pads prompts to 77 tokens.
    tokenizer = CLIPTokenizer.from_pretrained(str(SD1_TOKENIZER), model_max_length=77)
    torch.manual_seed(3)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=64, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77)).eval().double()
    vae = AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                        sample_size=2 * LATENT_SIZE).eval().double()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SD15_DDIM), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pipeline_matches_bare_unet_and_reference(unet, start_noise):
    if not (SD1_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"no SD1 tokenizer files at {SD1_TOKENIZER} (ComfyUI's comfy/sd1_tokenizer); set COMFYUI_PATH")
    pipe = build_tiny_pipeline(unet)
    # A random text encoder maps similar prompts to near-equal embeddings; dissimilar ones give the
    # target its own path, so that MasaCtrl's effect on it is clearly measurable.
    texts = ["a photo of a cat", "an oil painting of a red bus in the snow, night, city lights"]
    num_steps = 10
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(texts, "cpu", 1, True)

    def run_pipeline():
        return pipe(texts, latents=start_noise.clone(), num_inference_steps=num_steps, guidance_scale=GUIDANCE,
                    output_type="latent").images

    with attach_masactrl(pipe, MutualAttentionSchedule()):
        got = run_pipeline()
    with attach_masactrl(unet, MutualAttentionSchedule(), timesteps=sd15_ddim(num_steps).timesteps, chunks=2):
        bare = ddim_sample_with_cfg(unet, num_steps, start_noise, uncond, cond)
    with reference_masactrl(unet, num_steps):
        expected = ddim_sample_with_cfg(unet, num_steps, start_noise, uncond, cond)
    plain_pipeline = run_pipeline()

    assert max_diff(got, bare) <= TOLERANCE, "the pipeline path and the bare-UNet path differ"
    diff = max_diff(got, expected)
    assert diff <= TOLERANCE, f"pipeline adapter vs reference MasaCtrl: max |diff| {diff:.3g}"
    assert max_diff(got[1], plain_pipeline[1]) > 1e-3
    assert max_diff(got[0], plain_pipeline[0]) <= TOLERANCE
