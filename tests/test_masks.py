"""Mask-guided MasaCtrl against an independent statement of the reference algorithm
(MutualSelfAttentionControlMask and MutualSelfAttentionControlMaskAuto of TencentARC/MasaCtrl).

The reference here keeps the published structure: it counts attention calls to find step and layer,
materialises softmax(q k^T * scale + mask) with einsum, restricts keys with the dtype's most negative
value, collects the head-averaged cross-attention maps of one resolution during the step, aggregates
them with mean / token sum / min-max, and clears them after the step. The only generalisation is that
(H, W) are given per token count instead of sqrt(N), so non-square latents can be checked too.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from masactrl_suite.attention import BatchLayout, MutualAttentionSchedule
from masactrl_suite.attention.diffusers_processors import attach_masactrl, mask_guidance, prompt_subject
from masactrl_suite.attention.equations import masked_mutual_attention, sdpa_attention
from masactrl_suite.attention.mask_guidance import MaskError, MaskGuidance
from masactrl_suite.attention.subject_maps import CapturedMaps
from masactrl_suite.attention.subject_words import (PromptSubject, PromptTokens, Subject, SubjectWordError,
                                                    find_word, parse_words)
from test_diffusers_adapter import (DTYPE, SD1_TOKENIZER, TEXT_DIM, ReferenceMasaCtrlProcessor, build_tiny_sd15_unet,
                                    ddim_sample_with_cfg, sd15_ddim)

TOLERANCE = 1e-8  # float64 throughout, as in test_diffusers_adapter


# ----------------------------------------------------------------------------------------------
# The reference
# ----------------------------------------------------------------------------------------------

def to_heads_rows(x, h):  # "(b h) n d -> h (b n) d"
    bh, n, d = x.shape
    return x.reshape(bh // h, h, n, d).permute(1, 0, 2, 3).reshape(h, bh // h * n, d)


def reference_attn_batch(q, k, v, h, scale, key_mask=None):
    """MutualSelfAttentionControlMask.attn_batch: q of one image ((b h) n d rows), k/v of the source;
    with a key mask, the fg and bg results stacked as two images."""
    b = q.shape[0] // h
    q, k, v = to_heads_rows(q, h), to_heads_rows(k, h), to_heads_rows(v, h)
    sim = torch.einsum("h i d, h j d -> h i j", q, k) * scale
    if key_mask is not None:
        mask = key_mask.to(sim.dtype)
        sim_bg = sim + mask.masked_fill(mask == 1, torch.finfo(sim.dtype).min)
        sim_fg = sim + mask.masked_fill(mask == 0, torch.finfo(sim.dtype).min)
        sim = torch.cat([sim_fg, sim_bg], dim=0)
    attn = sim.softmax(-1)
    if len(attn) == 2 * len(v):
        v = torch.cat([v] * 2)
    out = torch.einsum("h i j, h j d -> h i d", attn, v)
    hh, bn, d = out.shape  # "(h1 h) (b n) d -> (h1 b) n (h d)"
    h1, n = hh // h, bn // b
    return out.reshape(h1, h, b, n, d).permute(0, 2, 3, 1, 4).reshape(h1 * b, n, h * d)


def reference_mask_forward(q, k, v, h, scale, mask_s, mask_t, H, W):
    """MutualSelfAttentionControlMask.forward for the batch [u_src, u_tgt, c_src, c_tgt]; masks are
    (H0, W0) images resized with F.interpolate's default (nearest)."""
    qu, qc = q.chunk(2)
    ku, kc = k.chunk(2)
    vu, vc = v.chunk(2)
    key_mask = F.interpolate(mask_s[None, None], (H, W)).flatten()
    out_u_source = reference_attn_batch(qu[:h], ku[:h], vu[:h], h, scale)
    out_c_source = reference_attn_batch(qc[:h], kc[:h], vc[:h], h, scale)
    out_u_target = reference_attn_batch(qu[-h:], ku[:h], vu[:h], h, scale, key_mask)
    out_c_target = reference_attn_batch(qc[-h:], kc[:h], vc[:h], h, scale, key_mask)
    weight = F.interpolate(mask_t[None, None], (H, W)).reshape(-1, 1)
    out_u_target = out_u_target[:1] * weight + out_u_target[1:] * (1 - weight)
    out_c_target = out_c_target[:1] * weight + out_c_target[1:] * (1 - weight)
    return torch.cat([out_u_source, out_u_target, out_c_source, out_c_target])


def reference_aggregate(cross_attns, idx, H, W):
    """MutualSelfAttentionControlMaskAuto.aggregate_cross_attn_map, with (H, W) given."""
    attn_map = torch.stack(cross_attns, dim=1).mean(1)
    attn_map = attn_map.reshape(-1, H, W, attn_map.shape[-1])
    image = attn_map[..., idx].sum(-1)
    image_min = image.min(dim=1, keepdim=True)[0].min(dim=2, keepdim=True)[0]
    image_max = image.max(dim=1, keepdim=True)[0].max(dim=2, keepdim=True)[0]
    return (image - image_min) / (image_max - image_min)


class ReferenceMaskProcessor(ReferenceMasaCtrlProcessor):
    """Installed on every attention module. User masks (mask_s, mask_t) as MutualSelfAttentionControlMask,
    or, without them, MaskAuto: cross-attention maps of `capture_n` tokens collected during the step."""

    def __init__(self, num_att_layers, step_idx, layer_idx, sizes, capture_n=None, thres=0.1,
                 ref_token_idx=(1,), cur_token_idx=(1,), mask_s=None, mask_t=None):
        super().__init__(num_att_layers, step_idx, layer_idx)
        self.sizes, self.capture_n, self.thres = sizes, capture_n, thres
        self.ref_token_idx, self.cur_token_idx = list(ref_token_idx), list(cur_token_idx)
        self.mask_s, self.mask_t = mask_s, mask_t
        self.cross_attns = []
        self.masked_calls = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        h = attn.heads
        q, k, v = (self.to_batch_heads(x, h) for x in (attn.to_q(hidden_states), attn.to_k(context),
                                                       attn.to_v(context)))
        sim = torch.einsum("b i d, b j d -> b i j", q, k) * attn.scale
        probs = sim.softmax(-1)
        if is_cross and self.mask_s is None and q.shape[1] == self.capture_n:
            self.cross_attns.append(probs.reshape(-1, h, *probs.shape[-2:]).mean(1))
        if is_cross or self.cur_step not in self.step_idx or self.cur_att_layer // 2 not in self.layer_idx:
            out = self.from_batch_heads(torch.einsum("b i j, b j d -> b i d", probs, v), h)
        else:
            out = self.masked(q, k, v, h, attn.scale)
        out = attn.to_out[1](attn.to_out[0](out))
        self.cur_att_layer += 1
        if self.cur_att_layer == self.num_att_layers:
            self.cur_att_layer = 0
            self.cur_step += 1
            self.cross_attns = []  # MaskAuto.after_step
        return out

    def masked(self, q, k, v, h, scale):
        self.masked_calls += 1
        H, W = self.sizes[q.shape[1]]
        if self.mask_s is not None:
            return reference_mask_forward(q, k, v, h, scale, self.mask_s, self.mask_t, H, W)
        qu, qc = q.chunk(2)
        ku, kc = k.chunk(2)
        vu, vc = v.chunk(2)
        out_u_source = reference_attn_batch(qu[:h], ku[:h], vu[:h], h, scale)
        out_c_source = reference_attn_batch(qc[:h], kc[:h], vc[:h], h, scale)
        if not self.cross_attns:  # no map yet in this step: plain mutual self-attention
            out_u_target = reference_attn_batch(qu[-h:], ku[:h], vu[:h], h, scale)
            out_c_target = reference_attn_batch(qc[-h:], kc[:h], vc[:h], h, scale)
            return torch.cat([out_u_source, out_u_target, out_c_source, out_c_target])
        Hc, Wc = self.sizes[self.capture_n]
        mask_source = reference_aggregate(self.cross_attns, self.ref_token_idx, Hc, Wc)[-2]
        key_mask = F.interpolate(mask_source[None, None], (H, W)).flatten()
        key_mask = (key_mask >= self.thres).to(key_mask.dtype)
        out_u_target = reference_attn_batch(qu[-h:], ku[:h], vu[:h], h, scale, key_mask)
        out_c_target = reference_attn_batch(qc[-h:], kc[:h], vc[:h], h, scale, key_mask)
        mask_target = reference_aggregate(self.cross_attns, self.cur_token_idx, Hc, Wc)[-1]
        spatial = F.interpolate(mask_target[None, None], (H, W)).reshape(-1, 1)
        spatial = (spatial >= self.thres).to(spatial.dtype)
        out_u_target = out_u_target[:1] * spatial + out_u_target[1:] * (1 - spatial)
        out_c_target = out_c_target[:1] * spatial + out_c_target[1:] * (1 - spatial)
        return torch.cat([out_u_source, out_u_target, out_c_source, out_c_target])


# ----------------------------------------------------------------------------------------------
# Random tensors
# ----------------------------------------------------------------------------------------------

def random_qkv(seed, rows=4, n=60, heads=2, d=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, n, heads * d, generator=g, dtype=DTYPE) * 2 for _ in range(3)]


@pytest.mark.parametrize("H, W", [(6, 10), (8, 8)])
def test_masked_attention_matches_reference_equations(H, W):
    heads = 2
    q, k, v = random_qkv(0, n=H * W, heads=heads)
    g = torch.Generator().manual_seed(1)
    mask_s = (torch.rand(37, 23, generator=g) > 0.5).to(DTYPE)  # another size than the layer
    mask_t = (torch.rand(13, 29, generator=g) > 0.4).to(DTYPE)
    bh = lambda x: ReferenceMasaCtrlProcessor.to_batch_heads(x, heads)  # noqa: E731
    expected = reference_mask_forward(bh(q), bh(k), bh(v), heads, 0.5, mask_s, mask_t, H, W)
    guidance = MaskGuidance(source_mask=mask_s, target_mask=mask_t)
    source_fg, weight = guidance.masks_for_layer(3, [0, 0], H, W, None)
    got = masked_mutual_attention(q, k, v, heads, torch.tensor([0, 0, 2, 2]), source_fg[[1, 1]], weight[[1, 1]],
                                  torch.tensor([1, 3]))
    assert (got - expected).abs().max() <= TOLERANCE


def test_full_masks_are_plain_mutual_attention():
    """All-foreground source and target masks leave nothing to split: MasaCtrl without masks."""
    from masactrl_suite.attention import mutual_self_attention
    q, k, v = random_qkv(2)
    rows = torch.tensor([0, 0, 2, 2])
    got = masked_mutual_attention(q, k, v, 2, rows, torch.ones(2, 60, dtype=torch.bool), torch.ones(2, 60),
                                  torch.tensor([1, 3]))
    assert (got - mutual_self_attention(q, k, v, 2, rows)).abs().max() <= TOLERANCE


def _fused(q, k, v, heads, rows, fg, weight, masked):
    return masked_mutual_attention(q, k, v, heads, rows, fg, weight, masked)  # no group_size: the fused form


@pytest.mark.parametrize("per,chunks,shared", [(2, 2, True), (3, 2, True), (2, 2, False), (4, 1, True)])
def test_key_subsets_equal_the_fused_additive_mask(per, chunks, shared):
    """With a run layout the fg/bg passes read only the fg/bg keys: the same numbers as the reference's mask."""
    q, k, v = random_qkv(4, rows=per * chunks)
    g = torch.Generator().manual_seed(5)
    layout = BatchLayout()
    rows = layout.gather_index(per, chunks, "cpu")
    masked = torch.tensor([c * per + b for c in range(chunks) for b in range(1, per)])
    fg = torch.rand(chunks, 60, generator=g) > 0.5
    if shared:
        fg[:] = fg[0]
    fg = fg.repeat_interleave(per - 1, 0)
    weight = torch.rand(len(masked), 60, generator=g, dtype=DTYPE)
    weight[0] = weight[0].round()  # binary weights (automatic masks) and soft ones (resized user masks)
    calls = []

    def kernel(q_, k_, v_, heads):
        calls.append(k_.shape[1])
        return sdpa_attention(q_, k_, v_, heads)
    got = masked_mutual_attention(q, k, v, 2, rows, fg, weight, masked, group_size=layout.group_size(per),
                                  attention=kernel)
    expected = _fused(q, k, v, 2, rows, fg, weight, masked)
    assert (got - expected).abs().max() <= TOLERANCE
    passes = 1 if shared else chunks
    assert len(calls) == 1 + 2 * passes and sum(calls[1:]) == 60 * passes  # fg + bg keys = all keys, once


@pytest.mark.parametrize("kept", [0, 60])
def test_empty_or_full_source_masks_keep_the_reference_uniform_softmax(kept):
    q, k, v = random_qkv(6)
    rows = BatchLayout().gather_index(2, 2, "cpu")
    fg = torch.zeros(2, 60, dtype=torch.bool)
    fg[:, :kept] = True
    weight = torch.rand(2, 60, dtype=DTYPE)
    masked = torch.tensor([1, 3])
    got = masked_mutual_attention(q, k, v, 2, rows, fg, weight, masked, group_size=2)
    assert torch.equal(got, _fused(q, k, v, 2, rows, fg, weight, masked))


def test_automatic_masks_match_reference_aggregation():
    g = torch.Generator().manual_seed(3)
    Hc, Wc, T = 3, 5, 77
    probs = [torch.rand(2, Hc * Wc, T, generator=g, dtype=DTYPE).softmax(-1) for _ in range(3)]
    subject = Subject(PromptSubject(("dog",), ((4, 5),), 77), PromptSubject(("dog", "hat"), ((6,), (9,)), 77))
    guidance = MaskGuidance(threshold=0.4, subject=subject, capture_layers=frozenset({1, 2, 3}))
    maps = CapturedMaps()
    selection = guidance.token_selection([0, 0], T).to(DTYPE)
    for layer, p in zip((1, 2, 3), probs):
        maps.add(layer, p @ selection, Hc, Wc)
    H, W = 6, 10
    source_fg, target = guidance.masks_for_layer(7, [0, 0], H, W, maps)
    ref_s = reference_aggregate(probs, [4, 5], Hc, Wc)[0]
    ref_t = reference_aggregate(probs, [6, 9], Hc, Wc)[1]
    assert torch.equal(source_fg[1], F.interpolate(ref_s[None, None], (H, W)).flatten() >= 0.4)
    assert torch.equal(target[1], (F.interpolate(ref_t[None, None], (H, W)).flatten() >= 0.4).float())
    # the reference aggregates only the maps collected so far in the step
    partial, _ = guidance.masks_for_layer(2, [0, 0], H, W, maps)
    ref_partial = reference_aggregate(probs[:1], [4, 5], Hc, Wc)[0]
    assert torch.equal(partial[1], F.interpolate(ref_partial[None, None], (H, W)).flatten() >= 0.4)
    assert guidance.masks_for_layer(1, [0, 0], H, W, maps) is None  # no map yet: plain MasaCtrl


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5])
def test_threshold_out_of_range(threshold):
    with pytest.raises(MaskError, match="threshold"):
        MaskGuidance(threshold=threshold, source_mask=torch.ones(4, 4), target_mask=torch.ones(4, 4))


def test_bad_user_masks():
    with pytest.raises(MaskError, match=r"source_mask \[1\] is empty"):
        MaskGuidance(source_mask=torch.stack([torch.ones(4, 4), torch.zeros(4, 4)]), target_mask=torch.ones(4, 4))
    with pytest.raises(MaskError, match="no target_mask and no subject"):
        MaskGuidance(source_mask=torch.ones(4, 4))
    guidance = MaskGuidance(source_mask=torch.ones(4, 4), target_mask=torch.ones(3, 4, 4))
    with pytest.raises(MaskError, match="target_mask has 3 masks but the batch has 2 target"):
        guidance.masks_for_layer(0, [0, 0, 0], 4, 4, None)
    assert guidance.masks_for_layer(0, [0, 0, 0, 0], 4, 4, None) is not None  # 3 targets: one mask each


# ----------------------------------------------------------------------------------------------
# Words -> tokens (ComfyUI's real tokenizer is exercised in test_comfyui_masks.py)
# ----------------------------------------------------------------------------------------------

# A toy vocabulary in CLIP's style: "</w>" ends a word.
VOCAB = {1: "a</w>", 2: "photo</w>", 3: "of</w>", 4: "cor", 5: "gi</w>", 6: "hat</w>", 7: ",</w>", 8: "gi</w>"}


def toy_tokens(ids):
    chunk = [(49406, 1.0)] + [(i, 1.0) for i in ids] + [(49407, 1.0)] * (77 - 1 - len(ids))
    return PromptTokens.from_chunks([chunk], {49406, 49407}, lambda t: VOCAB[t].endswith("</w>"))


def test_words_split_into_several_tokens_and_repeated():
    prompt = toy_tokens([1, 4, 5, 7, 6, 3, 1, 4, 5])  # "a corgi, hat of a corgi"
    assert find_word(prompt, toy_tokens([4, 5]), "corgi", "...", "source_words") == (2, 3, 8, 9)
    assert find_word(prompt, toy_tokens([6]), "hat", "...", "source_words") == (5,)


def test_word_boundaries_are_respected():
    prompt = toy_tokens([1, 4, 5])  # "a corgi": "gi" alone is not a word of it
    with pytest.raises(SubjectWordError, match="'gi' is not in the prompt \"a corgi\""):
        find_word(prompt, toy_tokens([5]), "gi", "a corgi", "source_words")


def test_word_list_parsing_and_context_repeats():
    assert parse_words(" corgi, red hat ,", "source_words") == ("corgi", "red hat")
    with pytest.raises(SubjectWordError, match="source_words is empty"):
        parse_words(" , ", "source_words")
    subject = PromptSubject(("corgi",), ((2, 3),), 77)
    assert subject.positions_in_context(154, 0) == [2, 3, 79, 80]
    with pytest.raises(SubjectWordError, match="not a whole number"):
        subject.positions_in_context(100, 0)


def test_words_with_a_transformers_clip_tokenizer():
    if not (SD1_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"no SD1 tokenizer files at {SD1_TOKENIZER} (ComfyUI's comfy/sd1_tokenizer); set COMFYUI_PATH")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(SD1_TOKENIZER), model_max_length=77)
    subject = prompt_subject(tokenizer, "masactrl, a corgi and a Corgi", "masactrl, corgi")
    assert subject.positions == ((1, 2, 3, 4), (7, 10)) and subject.length == 77
    with pytest.raises(SubjectWordError, match="'cat' is not in the prompt"):
        prompt_subject(tokenizer, "a corgi", "cat")


# ----------------------------------------------------------------------------------------------
# A tiny random-weight diffusers UNet (SD1.5's block pattern), DDIM with CFG, float64
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet():
    return build_tiny_sd15_unet()


def noise_and_prompts(h, w):
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(1, 4, h, w, generator=g, dtype=DTYPE).expand(2, -1, -1, -1)
    uncond = torch.randn(1, 77, TEXT_DIM, generator=g, dtype=DTYPE).expand(2, -1, -1)
    cond = torch.randn(2, 77, TEXT_DIM, generator=g, dtype=DTYPE) * 3
    return noise, uncond, cond


def sizes_by_tokens(h, w):
    sizes = {}
    for level in range(4):
        sizes[h * w] = (h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    return sizes


def run_reference(unet, steps, processor, noise, uncond, cond):
    originals = unet.attn_processors
    unet.set_attn_processor(processor)
    try:
        return ddim_sample_with_cfg(unet, steps, noise, uncond, cond)
    finally:
        unet.set_attn_processor(originals)


@pytest.mark.parametrize("size, threshold", [((16, 16), 0.1), ((16, 24), 0.5)], ids=["square", "non-square"])
def test_automatic_masks_match_reference_on_a_unet(unet, size, threshold):
    steps = 8
    noise, uncond, cond = noise_and_prompts(*size)
    sizes = sizes_by_tokens(*size)
    capture_n = [n for n, hw in sizes.items()][2]  # level 2: the paper's 16x16 at 512 px
    reference = ReferenceMaskProcessor(len(unet.attn_processors), range(3, steps), range(10, 16), sizes,
                                       capture_n, threshold, ref_token_idx=(2, 3), cur_token_idx=(5, 9))
    expected = run_reference(unet, steps, reference, noise, uncond, cond)
    assert reference.masked_calls == (steps - 3) * 6

    subject = Subject(PromptSubject(("corgi",), ((2, 3),), 77), PromptSubject(("corgi", "hat"), ((5,), (9,)), 77))
    guidance = mask_guidance(unet, threshold, subject, map_level=2)
    assert guidance.capture_layers == {4, 5, 7, 8, 9}
    schedule = MutualAttentionSchedule(start_step=3)
    with attach_masactrl(unet, schedule, timesteps=sd15_ddim(steps).timesteps, chunks=2, masks=guidance):
        got = ddim_sample_with_cfg(unet, steps, noise, uncond, cond)
    with attach_masactrl(unet, schedule, timesteps=sd15_ddim(steps).timesteps, chunks=2):
        unmasked = ddim_sample_with_cfg(unet, steps, noise, uncond, cond)

    assert (got - expected).abs().max() <= TOLERANCE
    assert (got[1] - unmasked[1]).abs().max() > 1e-4  # the masks really changed the target
    assert (got[0] - unmasked[0]).abs().max() <= TOLERANCE  # and left the source alone


def test_user_masks_match_reference_on_a_unet(unet):
    steps = 6
    noise, uncond, cond = noise_and_prompts(16, 24)
    g = torch.Generator().manual_seed(7)
    mask_s = (torch.rand(40, 30, generator=g) > 0.5).to(DTYPE)
    mask_t = (torch.rand(21, 33, generator=g) > 0.5).to(DTYPE)
    reference = ReferenceMaskProcessor(len(unet.attn_processors), range(2, steps), range(10, 16),
                                       sizes_by_tokens(16, 24), mask_s=mask_s, mask_t=mask_t)
    expected = run_reference(unet, steps, reference, noise, uncond, cond)
    guidance = mask_guidance(unet, source_mask=mask_s, target_mask=mask_t)
    with attach_masactrl(unet, MutualAttentionSchedule(start_step=2), timesteps=sd15_ddim(steps).timesteps,
                         chunks=2, masks=guidance, layout=BatchLayout((0,))):
        got = ddim_sample_with_cfg(unet, steps, noise, uncond, cond)
    assert (got - expected).abs().max() <= TOLERANCE
