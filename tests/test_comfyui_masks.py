"""Mask-guided MasaCtrl in the real ComfyUI: the model's own tokenizer, ComfyUI's samplers and its
way of running cond and uncond together or apart. The numerics of the masks against the reference
algorithm are in test_masks.py. Skipped, with the reason printed, where no ComfyUI checkout is found."""
from types import SimpleNamespace

import pytest
import torch

from comfy_harness import call_node

MASACTRL, SUBJECT, MASKS, PREVIEW = ("MasaCtrlMutualSelfAttention", "MasaCtrlSubjectPrompts", "MasaCtrlMasks",
                                     "MasaCtrlMaskPreview")
SCHEDULE = dict(start_step=2, start_layer=5)
# The test UNet has two resolution levels: the cross-attention maps come from its lower one ("1/2").
MASK_DEFAULTS = dict(threshold=0.3, map_resolution="1/2", map_layers="all")


@pytest.fixture(scope="module")
def sd(checkpoint):
    nodes, model, clip = checkpoint.nodes, checkpoint.model, checkpoint.clip
    run = lambda node, *args, **kw: nodes.NODE_CLASS_MAPPINGS[node].execute(*args, **kw).result  # noqa: E731
    positive, subject = run(SUBJECT, clip, "a photo of a corgi", "a watercolor of a corgi wearing a hat",
                            "corgi", "corgi, hat")
    masactrl = call_node(checkpoint.comfy, MASACTRL, model=model, **SCHEDULE)[0]
    return SimpleNamespace(nodes=nodes, run=run, model=model, clip=clip, positive=positive, subject=subject,
                           masactrl=masactrl, negative=checkpoint.encode(""))


def masks(sd, model=None, **inputs):
    return sd.run(MASKS, model or sd.masactrl, **{**MASK_DEFAULTS, "subject": sd.subject, **inputs})[0]


def sample(sd, model, size=(64, 96), negative=None, sampler="euler", steps=5):
    latent = {"samples": torch.zeros(2, 4, size[1] // 8, size[0] // 8)}
    return sd.nodes.common_ksampler(model, 7, steps, 5.0, sampler, "normal", sd.positive, negative or sd.negative,
                                    latent)[0]["samples"]


def test_subject_words_with_the_models_tokenizer(sd):
    _, subject = sd.run(SUBJECT, sd.clip, "masactrl, a corgi and a corgi", "a Corgi in a (tuxedo:1.2)",
                        "masactrl, corgi", "tuxedo, corgi")
    assert subject.source.words == ("masactrl", "corgi")
    assert subject.source.positions == ((1, 2, 3, 4), (7, 10))  # 4 tokens; a repeated word: both places
    assert subject.target.positions == ((5,), (2,))  # weights and capitals do not matter
    assert subject.source.length == subject.target.length == 77


def test_unknown_word_names_the_word_and_the_prompt(sd):
    with pytest.raises(ValueError, match="target_words: the word 'cat' is not in the prompt \"a photo of a dog\""):
        sd.run(SUBJECT, sd.clip, "a photo of a corgi", "a photo of a dog", "corgi", "cat")


def test_full_user_masks_equal_masactrl_without_masks(sd):
    """White source and target masks leave nothing to split, whatever their size."""
    full = masks(sd, source_mask=torch.ones(1, 20, 30), target_mask=torch.ones(1, 7, 5), subject=None)
    assert torch.allclose(sample(sd, full), sample(sd, sd.masactrl), atol=1e-5)


def test_user_masks_of_another_size_guide_the_target(sd):
    source = torch.zeros(1, 50, 30)
    source[:, 10:40, 5:25] = 1
    target = torch.zeros(2, 33, 21)
    target[:, 5:30, :12] = 1
    guided = sample(sd, masks(sd, source_mask=source, target_mask=target[:1], subject=None))
    plain = sample(sd, sd.masactrl)
    assert (guided[1] - plain[1]).abs().max() > 1e-3
    assert torch.allclose(guided[0], plain[0], atol=1e-5)  # the source is never masked


def split_by_memory(monkeypatch, base_model):
    """Make ComfyUI believe a batch does not fit, so it runs uncond alone and before cond."""
    monkeypatch.setattr(base_model, "memory_required", lambda *a, **k: float("inf"))


def test_automatic_masks_do_not_depend_on_how_comfyui_batches_cond_and_uncond(sd, monkeypatch):
    model = masks(sd)
    together = sample(sd, model)
    # The negative repeated 5x along the tokens: the same cross-attention, but a length the cond cannot share
    # a batch with, so ComfyUI runs cond first, alone.
    repeated = [[c.repeat(1, 5, 1), opts] for c, opts in sd.negative]
    apart_cond_first = sample(sd, model, negative=repeated)
    split_by_memory(monkeypatch, model.model)
    uncond_first = sample(sd, model)
    evaluation = model.get_wrappers("calc_cond_batch", "masactrl_masks")[0]
    assert evaluation._cond_first_run is not None  # the uncond-first order really happened, and was fixed
    monkeypatch.undo()
    assert torch.allclose(uncond_first, together, atol=1e-4)
    assert torch.allclose(apart_cond_first, together, atol=1e-4)
    assert (together[1] - sample(sd, sd.masactrl)[1]).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "heun"])
def test_automatic_masks_with_other_samplers_and_sizes(sd, sampler):
    out = sample(sd, masks(sd), size=(72, 40), sampler=sampler, steps=4)
    assert out.shape == (2, 4, 5, 9) and torch.isfinite(out).all()


def test_preview_shows_maps_and_masks_per_word(sd):
    model = masks(sd)
    latent = {"samples": sample(sd, model)}
    maps, mask, labels = sd.run(PREVIEW, model, latent, -1)
    # source: 'corgi'; target: 'corgi', 'hat'
    assert maps.shape == (3, 96, 64, 3) and mask.shape == (3, 96, 64)
    assert labels.splitlines()[2].startswith("2: image 1 'hat'")
    assert 0 < mask.mean() < 1 and maps.min() >= 0 and maps.max() <= 1
    again = sd.run(PREVIEW, model, latent, -1)[1]
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="step 99 made no masks"):
        sd.run(PREVIEW, model, latent, 99)


def test_bad_inputs_leave_the_model_unpatched(sd):
    before = repr(sd.masactrl.model_options)
    with pytest.raises(ValueError, match="threshold"):
        masks(sd, threshold=1.0)
    with pytest.raises(ValueError, match="source_mask .* is empty"):
        masks(sd, source_mask=torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="target_mask has 3 masks but the batch has 1 target"):
        sample(sd, masks(sd, source_mask=torch.ones(1, 8, 8), target_mask=torch.ones(3, 8, 8)))
    with pytest.raises(ValueError, match="add a MasaCtrl node"):
        sample(sd, masks(sd, model=sd.model))
    with pytest.raises(ValueError, match="map_resolution"):
        masks(sd, map_resolution="1/4 (paper)")  # this small UNet has no cross-attention at 1/4
    assert repr(sd.masactrl.model_options) == before
    assert "masactrl_masks" not in sd.model.model_options.get("transformer_options", {})
