"""MasaCtrl on diffusion transformers in the real ComfyUI: tiny random-weight Flux.1, Chroma, SD3 (MMDiT-X) and
Qwen-Image built from ComfyUI's own classes, patched by the MasaCtrl node, sampled by ComfyUI's samplers."""
from types import SimpleNamespace

import pytest
import torch

from comfy_harness import call_node
from tiny_dit import FLUX, prompts, sample, sampler_run, tiny_model

NODE = "MasaCtrlMutualSelfAttention"
TEXT = 5  # the tiny prompts' tokens
# family -> cfg (guidance-distilled Flux/Chroma: no uncond pass; SD3, Qwen-Image: true CFG)
FAMILIES = {"flux": 1.0, "chroma": 1.0, "sd3": 3.0, "qwen_image": 2.5}
GUIDED = ("flux", "chroma")


@pytest.fixture(scope="module", params=list(FAMILIES))
def dit(comfy, request):
    family = request.param
    positive, negative = prompts(2, TEXT, guidance=3.5 if family in GUIDED else None)
    return SimpleNamespace(comfy=comfy, family=family, model=tiny_model(family), positive=positive,
                           negative=negative, cfg=FAMILIES[family], job=job(family))


def job(family, **kwargs):
    return sampler_run(frames=1 if family == "qwen_image" else None, **kwargs)


def masactrl(dit, model=None, **inputs):
    return call_node(dit.comfy, NODE, model=model or dit.model, **{"start_step": 2, "start_layer": 0, **inputs})[0]


def active_sites(patched) -> list:
    """The blocks where the MasaCtrl patch acts (it is installed at every block)."""
    from masactrl_suite.attention.comfyui_dit_patches import installed_dit_patches

    return sorted(site for site, patch in installed_dit_patches(patched).items() if patch.active)


def run(dit, model, **kwargs):
    return sample(model, dit.job, dit.positive, dit.negative, dit.cfg, **kwargs)


# -- the equations on real block calls ---------------------------------------------------------------------

def record_attention_calls(dit):
    """One model call of the unpatched model, recording every attention call ComfyUI's kernels receive."""
    calls = []

    def recorder(func, *args, **kwargs):
        calls.append((func, args, dict(kwargs)))
        return func(*args, **kwargs)

    sample(dit.model, job(dit.family, steps=1), dit.positive, dit.negative, dit.cfg,
           model_options_update={"transformer_options": {"optimized_attention_override": recorder}})
    return calls


def as_heads(t, heads, skip_reshape):
    """[B, H, L, D] in float64, whatever layout the kernel got (SD3 hands v over as [B, L, H, D])."""
    if skip_reshape:
        return t.double()
    b, n = t.shape[:2]
    return t.view(b, n, heads, -1).transpose(1, 2).double()


def shift_right(k, width, axes_dim, theta):
    """RoPE's rotation by `width` columns, written out: pair j of the column axis turns by width * theta^(-2j/dim).
    k: [..., D] in Flux's pair order (index axis pairs, then row pairs, then column pairs)."""
    first = (axes_dim[0] + axes_dim[1]) // 2
    column_pairs = axes_dim[2] // 2
    angle = torch.zeros(k.shape[-1] // 2, dtype=torch.float64)
    angle[first:first + column_pairs] = width * theta ** (-2.0 * torch.arange(column_pairs, dtype=torch.float64)
                                                          / axes_dim[2])
    x0, x1 = k[..., 0::2], k[..., 1::2]
    out = torch.empty_like(k)
    out[..., 0::2] = torch.cos(angle) * x0 - torch.sin(angle) * x1
    out[..., 1::2] = torch.sin(angle) * x0 + torch.cos(angle) * x1
    return out


def reference(q, k, v, source_rows, image, text_tokens, shift):
    """softmax(q K'^T / sqrt(d)) V' per row, explicitly, K'/V' assembled token by token (module docstring)."""
    out = torch.empty_like(q)
    for i, s in enumerate(source_rows.tolist()):
        keys, values = k[i].clone(), v[i].clone()
        if i != s:
            if text_tokens == "source":
                keys, values = k[s].clone(), v[s].clone()
            keys[:, image], values[:, image] = k[s][:, image], v[s][:, image]
            if shift is not None:
                keys[:, image] = shift(keys[:, image])
        weights = torch.softmax(q[i] @ keys.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        out[i] = weights @ values
    return out


@pytest.mark.parametrize("text_tokens,positions", [("target", "beside"), ("target", "same"), ("source", "beside")])
def test_patched_attention_matches_an_explicit_reference_on_real_block_calls(dit, text_tokens, positions):
    from masactrl_suite.attention.comfyui_dit_patches import DiTCall, JointMutualAttention, MasaCtrlDiT
    from masactrl_suite.attention.joint_attention import JointAttentionSettings

    settings = JointAttentionSettings(text_tokens, positions)
    diffusion_model = dit.model.get_model_object("diffusion_model")
    helper = MasaCtrlDiT(None, settings, diffusion_model)
    calls = record_attention_calls(dit)
    rows = torch.tensor([0, 0, 2, 2][:calls[0][1][0].shape[0]])  # cond and uncond chunks of [source, target]
    image_tokens = (dit.job.noise.shape[-2] // 2) * (dit.job.noise.shape[-1] // 2)
    width = dit.job.noise.shape[-1] // 2
    rope = getattr(diffusion_model, "pe_embedder", None)  # Flux, Chroma, Qwen-Image
    checked = 0
    for func, args, kwargs in calls:
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        skip = kwargs.get("skip_reshape", False)
        tokens = q.shape[2 if skip else 1]
        text = tokens - image_tokens  # double/joint calls hold TEXT + image, single ones the same, SD3.5's extra
        call = DiTCall(True, rows[:q.shape[0]], TEXT, helper.rotation(width, q.device))
        fresh = [t.clone() for t in args[:3]]  # the override writes the targets' k/v rows in place
        patched = JointMutualAttention(helper, call, 0, TEXT if text else 0, image_tokens)(func, *fresh, *args[3:],
                                                                                           **kwargs)
        assert torch.equal(fresh[1][0], k[0]) and torch.equal(fresh[2][0], v[0])  # the source's rows untouched
        image = slice(text, tokens)
        shift = None
        if rope is not None and positions == "beside":
            def shift(x):
                return shift_right(x, width, rope.axes_dim, rope.theta)
        expected = reference(as_heads(q, heads, skip), as_heads(k, heads, skip), as_heads(v, heads, skip),
                             rows[:q.shape[0]], image, text_tokens, shift)
        expected = expected.transpose(1, 2).reshape(q.shape[0], tokens, -1)  # the kernels' output layout
        torch.testing.assert_close(patched.double(), expected, rtol=0, atol=1e-5)
        checked += 1
    # one model call: Flux 3 double + 3 single blocks, Chroma 2 + 2, SD3 3 joint blocks + block 0's image-only call
    assert checked == {"flux": 6, "chroma": 4, "sd3": 4, "qwen_image": 2}[dit.family]


@pytest.mark.parametrize("family", ["flux", "chroma"])
def test_the_rope_shift_equals_embedding_the_shifted_positions(comfy, family):
    # R_delta R_p k == R_(p + delta) k, against ComfyUI's own RoPE (its embedder and rotation) of shifted ids.
    from comfy.ldm.flux.math import apply_rope

    from masactrl_suite.attention.comfyui_dit_patches import MasaCtrlDiT
    from masactrl_suite.attention.joint_attention import JointAttentionSettings, rotate_pairs

    embedder = tiny_model(family).get_model_object("diffusion_model").pe_embedder
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(1, -1, 3)
    k = torch.randn(1, 2, ids.shape[1], 32, generator=torch.Generator().manual_seed(0))
    at_p, _ = apply_rope(k, k, embedder(ids))
    at_p_plus_delta, _ = apply_rope(k, k, embedder(ids + torch.tensor([0.0, 0.0, 6.0])))
    rotation = MasaCtrlDiT(None, JointAttentionSettings(), SimpleNamespace(pe_embedder=embedder)).rotation(6, "cpu")
    torch.testing.assert_close(rotate_pairs(at_p, rotation), at_p_plus_delta, rtol=0, atol=1e-5)


# -- sampling through the node ---------------------------------------------------------------------------

def test_the_source_is_sampled_exactly_as_unpatched_and_targets_change(dit):
    plain = run(dit, dit.model)
    patched = run(dit, masactrl(dit))
    assert torch.equal(patched[0], plain[0])
    assert (patched[1] - plain[1]).abs().max() > 1e-3


def test_a_schedule_past_the_last_step_changes_nothing_bit_for_bit(dit):
    # The node refuses such a schedule when sampling starts (it would be a silent plain run); the patch itself,
    # installed without that check, leaves every step to the unpatched blocks.
    from masactrl_suite.attention import BatchLayout, MutualAttentionSchedule, MutualSelfAttentionControl
    from masactrl_suite.attention.comfyui_dit_patches import dit_layer_map_of, patch_dit_model
    from masactrl_suite.attention.joint_attention import JointAttentionSettings

    layer_map = dit_layer_map_of(dit.model.get_model_object("diffusion_model"))
    control = MutualSelfAttentionControl(MutualAttentionSchedule(start_step=dit.job.steps, start_layer=0),
                                         BatchLayout(), layer_map)
    patched = patch_dit_model(dit.model.clone(), control, JointAttentionSettings())
    assert torch.equal(run(dit, patched), run(dit, dit.model))
    with pytest.raises(ValueError, match=f"start_step {dit.job.steps} is past the last step"):
        run(dit, masactrl(dit, start_step=dit.job.steps))


def test_input_model_unchanged_and_reruns_identical(dit):
    before = repr(dit.model.model_options), repr(dit.model.wrappers)
    plain = run(dit, dit.model)
    patched = masactrl(dit)
    first = run(dit, patched)
    other = sample(patched, job(dit.family, batch=3, height=10, width=6), *prompts(3, TEXT, seed=5,
                   guidance=3.5 if dit.family in GUIDED else None), dit.cfg)  # another run, other size and batch
    assert other.shape[0] == 3
    assert torch.equal(run(dit, patched), first)
    assert torch.equal(run(dit, dit.model), plain)
    assert (repr(dit.model.model_options), repr(dit.model.wrappers)) == before


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "heun"])
def test_any_sampler_keeps_the_source(dit, sampler):
    assert torch.equal(run(dit, masactrl(dit), sampler=sampler)[0], run(dit, dit.model, sampler=sampler)[0])


def apart(apply_model, args):
    """model_function_wrapper: ComfyUI's model call, one call per cond/uncond chunk (as when they cannot be batched)."""
    x, c, chunks = args["input"], args["c"], args["cond_or_uncond"]
    per, outs = x.shape[0] // len(chunks), []
    for i, which in enumerate(chunks):
        rows = slice(i * per, (i + 1) * per)
        own = {key: value[rows] if torch.is_tensor(value) and value.shape[0] == x.shape[0] else value
               for key, value in c.items() if key != "transformer_options"}
        own["transformer_options"] = {**c["transformer_options"], "cond_or_uncond": [which]}
        outs.append(apply_model(x[rows], args["timestep"][rows], **own))
    return torch.cat(outs)


def test_cond_and_uncond_apart_or_together_give_the_same_result(comfy):
    dit = SimpleNamespace(comfy=comfy, model=tiny_model("sd3"), cfg=3.0, job=sampler_run())
    dit.positive, dit.negative = prompts(2, TEXT, guidance=None)
    patched = masactrl(dit)
    together = run(dit, patched)
    split = run(dit, patched, model_options_update={"model_function_wrapper": apart})
    torch.testing.assert_close(split, together, rtol=0, atol=1e-5)
    assert (together[1] - run(dit, dit.model)[1]).abs().max() > 1e-3


def test_layers_and_parts_select_blocks(dit):
    from masactrl_suite.attention.comfyui_dit_patches import dit_layer_map_of, installed_dit_patches

    patched = masactrl(dit, start_layer=-1)
    blocks = dit_layer_map_of(dit.model.get_model_object("diffusion_model")).sites
    assert sorted(installed_dit_patches(patched)) == sorted(blocks)  # every block: maps may be recorded anywhere
    sites = active_sites(patched)
    expected = {"flux": [("single_block", i) for i in range(3)], "chroma": [("single_block", i) for i in range(2)],
                "sd3": [("double_block", 1), ("double_block", 2)], "qwen_image": [("double_block", 1)]}[dit.family]
    assert sites == expected  # auto: Flux/Chroma the single-stream blocks, SD3/Qwen-Image the second half
    if dit.family in GUIDED:
        double_only = active_sites(masactrl(dit, blocks="double"))
        assert double_only == [("double_block", i) for i in range(FLUX["depth"] if dit.family == "flux" else 2)]
        assert active_sites(masactrl(dit, start_layer=1, end_layer=1)) == [("double_block", 1)]


def test_bad_inputs_get_clear_errors(dit):
    with pytest.raises(ValueError, match="start_layer .40. is past this model's last transformer block"):
        masactrl(dit, start_layer=40)
    if dit.family not in GUIDED:  # joint blocks only
        with pytest.raises(ValueError, match="contain no layer of the selected parts"):
            masactrl(dit, blocks="single")
    with pytest.raises(ValueError, match=r"Masks \(MasaCtrl\): no source_mask and no subject words"):
        masks_node(dit, masactrl(dit))
    with pytest.raises(ValueError, match="target_mask has 3 masks but the batch has 1 target"):
        run(dit, masks_node(dit, masactrl(dit), source_mask=torch.ones(1, 8, 8), target_mask=torch.ones(3, 8, 8)))
    with pytest.raises(ValueError, match="source_indices"):
        run(dit, masactrl(dit, source_indices="0,2"))


def test_an_unsupported_family_is_named(comfy):
    dit = SimpleNamespace(comfy=comfy, model=tiny_model("wan"))
    with pytest.raises(ValueError, match="SD3.x and Qwen-Image; this MODEL.s diffusion model is a WanModel"):
        masactrl(dit)


# -- explicit layer lists and Vital Layers --------------------------------------------------------------------

def test_an_explicit_layer_list_patches_exactly_those_blocks(comfy):

    dit = SimpleNamespace(comfy=comfy, model=tiny_model("flux"))
    patched = masactrl(dit, layers="0, 2-3,5", start_layer=4)  # start_layer is ignored with a list
    assert active_sites(patched) == [("double_block", 0), ("double_block", 2), ("single_block", 0),
                                                      ("single_block", 2)]
    with pytest.raises(ValueError, match="layers lists 9, past this model's last transformer block layer .5."):
        masactrl(dit, layers="1,9")
    with pytest.raises(ValueError, match="'3-1' is not a layer or a range"):
        masactrl(dit, layers="0,3-1")


def vital_layers(dit, **inputs):
    latent = {"samples": dit.job.latent}
    values = {"model": dit.model, "positive": dit.positive, "negative": dit.negative, "latent_image": latent,
              "seed": 0, "steps": 2, "cfg": dit.cfg, "sampler_name": "euler", "scheduler": "simple", "top_k": 2}
    return call_node(dit.comfy, "MasaCtrlVitalLayers", **{**values, **inputs})


def test_vital_layers_ranks_every_block_by_its_bypass(comfy):
    from comfy.sample import prepare_noise

    from comfy_harness import progress_updates, stops_when_interrupted
    from masactrl_suite.attention.schedule import parse_layers

    latent = torch.zeros(1, 16, 8, 12)
    job = SimpleNamespace(latent=latent, noise=prepare_noise(latent, 0), steps=2)  # the node's seed 0
    dit = SimpleNamespace(comfy=comfy, model=tiny_model("flux"), cfg=1.0, job=job)
    dit.positive, dit.negative = prompts(1, TEXT)
    before = repr(dit.model.model_options)
    seen = []
    updates = progress_updates(lambda: seen.append(vital_layers(dit)))
    layers, ranking, plot = seen[0]
    assert updates[-1] == (7 * 2, 7 * 2)  # one run with every block and one per block, 2 steps each
    rows = [line.split("|") for line in ranking.splitlines()[2:]]
    assert len(rows) == 6 and [row[3].strip() for row in rows].count("single 2") == 1
    # the change of one block, measured independently: bypass single block 1 by hand, same noise
    plain = sample(dit.model, dit.job, dit.positive, dit.negative, 1.0)
    bypassed = dit.model.clone()
    bypassed.set_model_patch_replace(lambda args, extra: {"img": args["img"]}, "dit", "single_block", 1)
    by_hand = float((sample(bypassed, dit.job, dit.positive, dit.negative, 1.0) - plain).norm() / plain.norm())
    listed = next(float(row[4]) for row in rows if row[2].strip() == "4")
    assert abs(listed - by_hand) < 1e-4
    changes = {int(row[2]): float(row[4]) for row in rows}
    top = sorted(changes, key=lambda layer: -changes[layer])[:2]
    assert parse_layers(layers) == tuple(sorted(top))
    assert active_sites(masactrl(dit, layers=layers)) == sorted(
        [("double_block", i) if i < 3 else ("single_block", i - 3) for i in top])
    assert plot.shape[0] == 1 and plot.shape[-1] == 3
    assert repr(dit.model.model_options) == before
    assert stops_when_interrupted(lambda: vital_layers(dit))
    with pytest.raises(ValueError, match="already has MasaCtrl"):
        vital_layers(dit, model=masactrl(dit))


# -- MasaCtrl Masks on diffusion transformers -----------------------------------------------------------------

def half_masks(height, width):
    """A source mask (left half white) and a target mask (top half white) at latent height x width x 8 pixels."""
    source, target = torch.zeros(1, height * 8, width * 8), torch.zeros(1, height * 8, width * 8)
    source[:, :, :width * 4] = 1.0
    target[:, :height * 4] = 1.0
    return source, target


def masked_reference(q, k, v, rows, image, fg, weight):
    """Explicit softmax of the masked form: image queries of a target over [text ; source fg] and [text ; source bg],
    blended by the target weight; everything else plain (q/k/v: [B, H, L, D] float64, K'/V' already swapped)."""
    out = reference(q, k, v, torch.arange(len(rows)), image, "target", None)  # plain attention on K'/V'
    text = list(range(image.start))
    for i, s in enumerate(rows.tolist()):
        if i == s:
            continue
        passes = []
        for part in (fg, ~fg):
            keep = text + [image.start + j for j in part.nonzero().flatten().tolist()]
            weights = torch.softmax(q[i][:, image] @ k[i][:, keep].transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
            passes.append(weights @ v[i][:, keep])
        out[i][:, image] = passes[0] * weight[:, None] + passes[1] * (1 - weight[:, None])
    return out


def test_masked_attention_matches_an_explicit_reference_on_real_block_calls(dit):
    from masactrl_suite.attention.comfyui_dit_patches import DiTCall, JointMutualAttention, MasaCtrlDiT
    from masactrl_suite.attention.control import BatchLayout
    from masactrl_suite.attention.joint_attention import JointAttentionSettings, mutual_keys_values
    from masactrl_suite.attention.mask_guidance import MaskGuidance

    height, width = dit.job.noise.shape[-2] // 2, dit.job.noise.shape[-1] // 2
    guidance = MaskGuidance(source_mask=half_masks(height * 2, width * 2)[0],
                            target_mask=half_masks(height * 2, width * 2)[1] * 0.75)  # a soft blend weight
    control = SimpleNamespace(layout=BatchLayout())
    helper = MasaCtrlDiT(control, JointAttentionSettings(positions="same"), dit.model.get_model_object(
        "diffusion_model"))
    fg, weight = guidance.masks_for_layer(0, [0, 0], height, width, None)
    calls = record_attention_calls(dit)
    for func, args, kwargs in calls:
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        skip = kwargs.get("skip_reshape", False)
        tokens = q.shape[2 if skip else 1]
        chunks = (0,) if q.shape[0] == 2 else (1, 0)
        rows = torch.tensor([0, 0, 2, 2][:q.shape[0]])
        call = DiTCall(True, rows, TEXT, None, (height, width), chunks)
        text = TEXT if tokens > height * width else 0
        patched = JointMutualAttention(helper, call, 0, text, height * width, True, False, guidance)(
            func, *(t.clone() for t in args[:3]), *args[3:], **kwargs)
        image = slice(text, tokens)
        k2, v2 = mutual_keys_values(k.clone(), v.clone(), rows, image, helper.settings, None, 2 if skip else 1, heads)
        expected = masked_reference(as_heads(q, heads, skip), as_heads(k2, heads, skip), as_heads(v2, heads, skip),
                                    rows, image, fg[1], weight[1].double())
        expected = expected.transpose(1, 2).reshape(q.shape[0], tokens, -1)
        torch.testing.assert_close(patched.double(), expected, rtol=0, atol=1e-5)


def subject_at(position: int):
    """The subject word at one token of the tiny prompts (what Subject Prompts finds for a one-token word)."""
    from masactrl_suite.attention.subject_words import PromptSubject, Subject

    word = PromptSubject(("subject",), ((position,),), TEXT)
    return Subject(word, word)


def masks_node(dit, model, **inputs):
    values = {"threshold": 0.1, "map_resolution": "1/4 (paper)", "map_layers": "all", **inputs}
    return call_node(dit.comfy, "MasaCtrlMasks", model=model, **values)[0]


# Subject words need a CLIP or T5 tokenizer; Qwen-Image's is refused (test_subject_words_on_qwen_image_are_refused).
@pytest.mark.parametrize("dit", ["flux", "chroma", "sd3"], indirect=True)
def test_automatic_masks_by_word_keep_the_source_and_show_in_the_preview(dit):
    plain = run(dit, dit.model)
    unmasked = run(dit, masactrl(dit))
    masked_model = masks_node(dit, masactrl(dit), subject=subject_at(2))
    masked = run(dit, masked_model)
    assert torch.equal(masked[0], plain[0])  # the source is untouched
    assert (masked[1] - unmasked[1]).abs().max() > 1e-4  # the masks changed the target
    assert torch.equal(run(dit, masked_model), masked)  # fresh maps every evaluation: reruns identical
    latent = {"samples": masked}
    shown, masks, labels = call_node(dit.comfy, "MasaCtrlMaskPreview", model=masked_model, samples=latent, step=-1)
    height, width = dit.job.noise.shape[-2:]
    assert shown.shape == (2, height * 8, width * 8, 3) and masks.shape == (2, height * 8, width * 8)
    assert "image 1 'subject'" in labels
    assert 0 < float(masks[1].mean()) < 1  # a subject region, not all or nothing


def test_user_masks_of_another_size_guide_the_target(dit):
    source, target = half_masks(40, 64)  # any size: resized to the token grid
    plain = run(dit, dit.model)
    masked = run(dit, masks_node(dit, masactrl(dit), source_mask=source, target_mask=target))
    full = run(dit, masks_node(dit, masactrl(dit), source_mask=torch.ones(1, 8, 8), target_mask=torch.ones(1, 8, 8)))
    assert torch.equal(masked[0], plain[0])
    assert (masked[1] - run(dit, masactrl(dit))[1]).abs().max() > 1e-4
    # a full foreground everywhere reads [text ; every source image key]: MasaCtrl without masks
    torch.testing.assert_close(full, run(dit, masactrl(dit)), rtol=0, atol=1e-5)


def test_masks_apart_or_together_give_the_same_result(comfy):
    dit = SimpleNamespace(comfy=comfy, model=tiny_model("sd3"), cfg=3.0, job=sampler_run())
    dit.positive, dit.negative = prompts(2, TEXT, guidance=None)
    patched = masks_node(dit, masactrl(dit), subject=subject_at(1))
    together = run(dit, patched)
    split = run(dit, patched, model_options_update={"model_function_wrapper": apart})
    torch.testing.assert_close(split, together, rtol=0, atol=1e-5)


def test_subject_words_on_qwen_image_are_refused():
    from masactrl_suite.attention.comfyui_conditioning import prompt_subject
    from masactrl_suite.attention.subject_words import SubjectWordError

    clip = SimpleNamespace(cond_stage_model=None, tokenizer=None)
    with pytest.raises(SubjectWordError, match="qwen25_7b.*Connect source_mask and target_mask"):
        prompt_subject(clip, "a corgi", {"qwen25_7b": [[(1, 1.0)]]}, "corgi", "source_words")


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_subject_words_with_the_t5_tokenizer(comfy, family):
    import comfy.text_encoders.flux
    import comfy.text_encoders.sd3_clip

    from masactrl_suite.attention.comfyui_conditioning import prompt_subject
    from masactrl_suite.attention.subject_words import SubjectWordError

    tokenizer = (comfy.text_encoders.flux.FluxTokenizer() if family == "flux"
                 else comfy.text_encoders.sd3_clip.SD3Tokenizer())
    encoders = SimpleNamespace(clip_l=object(), clip_g=object(), t5xxl=object())
    clip = SimpleNamespace(tokenizer=tokenizer, cond_stage_model=encoders, tokenize=tokenizer.tokenize_with_weights)
    prompt = "a photo of a corgi, with a red scarf"
    tokens = clip.tokenize(prompt)
    subject = prompt_subject(clip, prompt, tokens, "corgi, red scarf", "source_words")
    if family == "flux":  # positions in T5's tokens, the text Flux attends to
        pieces = [tokenizer.t5xxl.inv_vocab[tokens["t5xxl"][0][p][0]] for p in subject.positions[0]]
        assert "".join(pieces).replace("▁", "") == "corgi" and pieces[0].startswith("▁")
        assert subject.length == len(tokens["t5xxl"][0])
    else:  # SD3: CLIP-L/G's 77 tokens come first, then T5's
        pieces = [tokenizer.clip_l.inv_vocab[tokens["l"][0][p][0]] for p in subject.positions[0]]
        assert "".join(pieces).replace("</w>", "") == "corgi"
        assert subject.length == 77 + len(tokens["t5xxl"][0])
    assert len(subject.positions[1]) >= 2  # "red scarf": both words' tokens
    with pytest.raises(SubjectWordError, match="'gi' is not in the prompt"):
        prompt_subject(clip, prompt, tokens, "gi", "source_words")  # never the inside of a word
