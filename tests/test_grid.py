"""Grid sampling: the tile plan and blend weights (pure torch), the wrapper against a translation-
equivariant model, and the node in the real ComfyUI with its samplers, noise mask, ControlNet and MasaCtrl.
Tests that need ComfyUI skip, with the reason printed, where no checkout is found."""
import itertools
from types import SimpleNamespace

import pytest
import torch

from masactrl_suite.completion.tiles import BLENDS, axis_starts, normalised_weights, plan_tiles

GRID = "MasaCtrlGridSampling"


# ---- the plan and the weights (pure torch) -------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap,align,aligned_to", [
    (64, 64, 16, 8, 8), (128, 64, 16, 8, 8), (192, 64, 16, 8, 8), (200, 64, 16, 8, 8), (97, 24, 5, 1, 1),
    (75, 16, 0, 4, 4), (30, 64, 16, 8, 8),
    (16, 8, 2, 8, 4), (32, 8, 2, 8, 2)])  # tiles about as small as the alignment: a finer grid
def test_tiles_cover_the_axis_with_the_overlap_asked_for(length, tile, overlap, align, aligned_to):
    starts = axis_starts(length, tile, overlap, align)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(s % aligned_to == 0 for s in starts[:-1])
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0 < g <= size - overlap for g in gaps)  # every neighbouring pair shares >= overlap pixels
    # as few tiles as the overlap allows, plus at most one where alignment needed it
    minimum = 1 if tile >= length else -(-(length - overlap) // (tile - overlap))
    assert minimum <= len(starts) <= minimum + 1


def test_every_plan_covers_with_the_overlap_and_at_most_one_extra_tile():
    """Exhaustively over small sizes, including tiles hardly larger than the alignment, where aligned
    starts cannot give the overlap and a finer grid must be used."""
    for length, tile, overlap, align in itertools.product(range(1, 140, 3), (8, 16, 24, 64), (0, 2, 4, 8, 16),
                                                          (1, 2, 4, 8)):
        if overlap >= tile:
            continue
        starts, size = axis_starts(length, tile, overlap, align), min(tile, length)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(0 < b - a <= size - overlap for a, b in zip(starts, starts[1:]))
        assert tile >= length or len(starts) <= -(-(length - overlap) // (tile - overlap)) + 1


def test_one_tile_when_the_latent_fits():
    assert plan_tiles(40, 56, 64, 64, 16) == plan_tiles(40, 56, 40, 56, 0)
    (tile,) = plan_tiles(40, 56, 64, 64, 16)
    assert (tile.top, tile.left, tile.height, tile.width) == (0, 0, 40, 56)


@pytest.mark.parametrize("blend", BLENDS)
def test_weights_sum_to_one_and_single_cover_is_exactly_one(blend):
    tiles = plan_tiles(24, 40, 8, 16, 4)
    weights = normalised_weights(tiles, 24, 40, 4, blend)
    total = torch.zeros(24, 40, dtype=torch.float64)
    cover = torch.zeros(24, 40, dtype=torch.int64)
    for tile, weight in zip(tiles, weights):
        tile.crop(total).add_(weight)
        tile.crop(cover).add_(1)
        assert bool((weight > 0).all())
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
    for tile, weight in zip(tiles, weights):
        assert bool((weight[tile.crop(cover) == 1] == 1.0).all())
    (whole,) = normalised_weights(plan_tiles(8, 8, 8, 8, 2), 8, 8, 2, blend)
    assert bool((whole == 1.0).all())


def test_linear_weights_fall_only_towards_neighbours():
    tiles = plan_tiles(8, 24, 8, 16, 8)  # two tiles side by side, 8 columns shared
    left, right = normalised_weights(tiles, 8, 24, 8, "linear")
    assert bool((left[:, :8] == 1).all()) and bool((right[:, -8:] == 1).all())
    assert bool((left[0, 8:].diff() < 0).all())  # fades out across the shared columns


# ---- the wrapper on a translation-equivariant model ------------------------------------------------------------

class LocalModel(torch.nn.Module):
    """A per-pixel network (1x1 convolutions) with per-image inputs (timestep, text context) and ControlNet
    residuals at two levels: a tile's output is the whole latent's output cropped, so any error in where
    tiles are cut, batched or blended back shows. Takes the call of ComfyUI's diffusion model and records
    what it was given."""
    channel_mult = (1, 2, 4, 4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1), torch.nn.Tanh(), torch.nn.Conv2d(8, 4, 1))
        self.calls = []

    def __call__(self, x, timesteps, context, y, control, transformer_options, **kwargs):
        self.calls.append(SimpleNamespace(x=x.shape, t=timesteps, context=context, chunks=transformer_options[
            "cond_or_uncond"], control=control))
        out = self.net(x) * timesteps.view(-1, 1, 1, 1) + context.mean() + kwargs.get("bias", 0)
        if control is not None:  # a full-size residual and one from the level below
            half, full = control["output"]
            out = out + full + torch.nn.functional.interpolate(half, scale_factor=2, mode="nearest")
        return out

    @property
    def class_obj(self):
        return self


@pytest.fixture(scope="module")
def grid_denoiser(comfy):
    from masactrl_suite.completion.comfyui_grid import GridDenoiser

    def make(tile, overlap, blend="linear", per_batch=0):
        return GridDenoiser(tile, tile, overlap, blend, per_batch, lambda shape: 1.0)
    return make


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("per_batch", [0, 1, 2])
def test_tiles_reassemble_the_whole_latent_output(grid_denoiser, blend, per_batch):
    """Every tile's output is exact here, so the blend must give back the untiled output (up to the float
    rounding of the weights), whatever the batching."""
    model = LocalModel()
    x = torch.randn(2, 4, 24, 40)
    t, context = torch.tensor([3.0, 3.0]), torch.randn(2, 5, 8)
    with torch.no_grad():
        whole = model(x, t, context, None, None, {"cond_or_uncond": [1, 0]})
        tiled = grid_denoiser(16, 8, blend, per_batch)(model, x, t, context, None, None,
                                                        {"cond_or_uncond": [1, 0], "uuids": ["u", "c"]})
    assert torch.allclose(tiled, whole, atol=1e-5)
    tiles = len(plan_tiles(24, 40, 16, 16, 8))
    assert len(model.calls) == 1 + (1 if per_batch == 0 else -(-tiles // per_batch))
    last = model.calls[-1]
    assert last.chunks == [1, 0] * (last.x[0] // 2)  # cond_or_uncond repeated per tile in the batch


def test_control_residuals_are_cropped_per_tile(grid_denoiser):
    model = LocalModel()
    x, t, context = torch.randn(1, 4, 24, 40), torch.ones(1), torch.zeros(1, 5, 8)
    control = lambda: {"output": [torch.randn(1, 4, 12, 20, generator=torch.Generator().manual_seed(1)),  # noqa
                                  torch.randn(1, 4, 24, 40, generator=torch.Generator().manual_seed(2))]}
    with torch.no_grad():  # the UNet pops residuals from the lists, last first: fresh lists per call
        whole = model(x, t, context, None, control(), {"cond_or_uncond": [0]})
        tiled = grid_denoiser(16, 8)(model, x, t, context, None, control(), {"cond_or_uncond": [0]})
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_per_image_tensors_are_repeated_and_maps_cropped(grid_denoiser):
    model = LocalModel()
    x, t, context = torch.randn(2, 4, 24, 40), torch.tensor([1.0, 2.0]), torch.zeros(2, 5, 8)
    bias = torch.randn(2, 4, 24, 40)  # a latent-sized extra input, as inpainting models' channels are
    with torch.no_grad():
        whole = model(x, t, context, None, None, {"cond_or_uncond": [0]}, bias=bias)
        tiled = grid_denoiser(16, 8)(model, x, t, context, None, None, {"cond_or_uncond": [0]}, bias=bias)
    assert torch.allclose(tiled, whole, atol=1e-5)
    assert model.calls[-1].t.tolist() == [1.0, 2.0] * (model.calls[-1].x[0] // 2)


# ---- the node in the real ComfyUI ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd(checkpoint):
    from comfy.controlnet import load_controlnet
    from comfy_harness import save_sd15_controlnet

    control_path = save_sd15_controlnet(checkpoint.comfy.work / "controlnet" / "grid-test-control.safetensors")
    encode = checkpoint.encode
    return SimpleNamespace(**vars(checkpoint), positive=encode("a photo of a dog, full body"), negative=encode(""),
                           controlnet=load_controlnet(str(control_path)))


def grid(sd, model=None, tile=64, overlap=16, blend="linear", per_batch=0):
    return sd.node[GRID].execute(model or sd.model, tile, tile, overlap, blend, per_batch).result[0]


def masactrl_model(sd, start_step):
    """MasaCtrl from `start_step` in the test UNet's decoder layers (5-10 of its 11)."""
    from comfy_harness import call_node

    return call_node(sd.comfy, "MasaCtrlMutualSelfAttention", model=sd.model, start_step=start_step,
                     start_layer=5)[0]


def sample(sd, model, width=64, height=64, steps=4, sampler="euler", positive=None, latent=None, denoise=1.0,
           seed=1):
    latent = latent or {"samples": torch.zeros(1, 4, height // 8, width // 8)}
    return sd.nodes.common_ksampler(model, seed, steps, 6.0, sampler, "normal", positive or sd.positive,
                                    sd.negative, latent, denoise=denoise)[0]["samples"]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun"])
def test_one_tile_is_exactly_the_untiled_result(sd, sampler):
    assert torch.equal(sample(sd, grid(sd), sampler=sampler), sample(sd, sd.model, sampler=sampler))
    assert torch.equal(sample(sd, grid(sd, tile=512), 64, 72), sample(sd, sd.model, 64, 72))


def test_one_tile_is_exact_with_noise_mask_controlnet_and_masactrl(sd):
    hint = torch.rand(1, 64, 64, 3)
    positive, negative = sd.nodes.ControlNetApplyAdvanced().apply_controlnet(
        sd.positive, sd.negative, sd.controlnet, hint, 0.8, 0.0, 1.0)
    masactrl = masactrl_model(sd, start_step=1)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 32:, :] = 1
    latent = {"samples": torch.randn(2, 4, 8, 8), "noise_mask": mask}
    run = lambda model: sd.nodes.common_ksampler(model, 2, 4, 6.0, "euler", "normal", positive, negative,  # noqa
                                                 latent, denoise=0.8)[0]["samples"]
    untiled = run(masactrl)
    assert torch.equal(run(grid(sd, masactrl)), untiled)
    assert torch.allclose(untiled[..., :4, :], latent["samples"][..., :4, :], atol=1e-4)  # the kept region


def test_grid_runs_with_noise_mask_controlnet_and_masactrl_on_many_tiles(sd):
    """A 64x200 canvas (latent 8x25: the last tile is not aligned to the UNet's levels), batch 2, target
    reading its source through MasaCtrl in each tile; batched tiles equal one tile at a time."""
    hint = torch.rand(1, 64, 200, 3)
    positive, negative = sd.nodes.ControlNetApplyAdvanced().apply_controlnet(
        sd.positive, sd.negative, sd.controlnet, hint, 0.8, 0.0, 1.0)
    masactrl = masactrl_model(sd, start_step=1)
    mask = torch.zeros(1, 1, 64, 200)
    mask[..., 100:] = 1
    latent = {"samples": torch.randn(2, 4, 8, 25), "noise_mask": mask}
    run = lambda model: sd.nodes.common_ksampler(model, 2, 3, 6.0, "euler", "normal", positive, negative,  # noqa
                                                 latent, denoise=0.9)[0]["samples"]
    batched, one_by_one = run(grid(sd, masactrl)), run(grid(sd, masactrl, per_batch=1))
    assert batched.shape == (2, 4, 8, 25)
    assert torch.allclose(batched, one_by_one, atol=1e-4)
    assert torch.allclose(batched[..., :12], latent["samples"][..., :12], atol=1e-4)
    assert not torch.allclose(batched[1], run(grid(sd))[1], atol=1e-4)  # MasaCtrl acted in the tiles


def seam_ratio(difference: torch.Tensor, edges: list[int]) -> float:
    """The largest jump between neighbouring columns at a tile edge, relative to the median jump."""
    jumps = (difference[..., 1:] - difference[..., :-1]).abs().mean(dim=(0, 1, 2))
    return float(torch.stack([jumps[e - 1] for e in edges]).max() / jumps.median())


def test_many_tiles_leave_no_seam_beyond_the_bound(sd):
    """One euler step from pure noise returns the blended prediction; its difference from the untiled one
    shows where tiles disagree. Stitching tiles without overlap puts a jump of about 3x the typical
    neighbour difference at every tile edge; the default blend keeps every tile edge under 1.5x."""
    untiled = sample(sd, sd.model, 256, 64, steps=1)

    def ratio(overlap, blend):
        difference = sample(sd, grid(sd, overlap=overlap, blend=blend), 256, 64, steps=1) - untiled
        tiles = plan_tiles(8, 32, 8, 8, overlap // 8)
        edges = sorted({t.left for t in tiles if t.left} | {t.left + t.width for t in tiles if t.left + t.width < 32})
        return seam_ratio(difference, edges)
    stitched, blended = ratio(0, "uniform"), ratio(32, "linear")
    assert stitched > 2.5  # the measure sees seams
    assert blended < 1.5


def test_tiles_per_call_follow_free_memory(grid_denoiser):
    import comfy.model_management
    from masactrl_suite.completion.comfyui_grid import GridDenoiser

    x = torch.zeros(2, 4, 24, 40)
    free = comfy.model_management.get_free_memory(x.device)
    fits_two = GridDenoiser(16, 16, 8, "linear", 0, lambda shape: free / 3.1)  # with ComfyUI's 1.5x margin
    tile = plan_tiles(24, 40, 16, 16, 8)[0]
    assert fits_two.batch_size(x, tile, 8) == 2
    assert GridDenoiser(16, 16, 8, "linear", 0, lambda shape: free * 10).batch_size(x, tile, 8) == 1
    assert GridDenoiser(16, 16, 8, "linear", 3, lambda shape: free * 10).batch_size(x, tile, 8) == 3


def test_input_model_is_not_changed_and_interrupt_stops_the_tile_loop(sd, grid_denoiser):
    import comfy.patcher_extension
    from comfy_harness import stops_when_interrupted

    before = {k: dict(v) for k, v in sd.model.wrappers.items()}
    patched = grid(sd)
    assert {k: dict(v) for k, v in sd.model.wrappers.items()} == before
    assert patched.get_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "masactrl_grid_sampling")
    model = LocalModel()
    assert stops_when_interrupted(lambda: grid_denoiser(16, 8, per_batch=1)(
        model, torch.zeros(1, 4, 24, 40), torch.ones(1), torch.zeros(1, 5, 8), None, None, {"cond_or_uncond": [0]}))
    assert model.calls == []


def test_bad_inputs_name_the_input(sd):
    with pytest.raises(ValueError, match="tile_width is 100, not a multiple of 8.*96 or 104"):
        sd.node[GRID].execute(sd.model, 100, 64, 16, "linear", 0)
    with pytest.raises(ValueError, match="overlap is 12"):
        sd.node[GRID].execute(sd.model, 64, 64, 12, "linear", 0)
    with pytest.raises(ValueError, match="overlap 64 must be smaller than the tile"):
        sd.node[GRID].execute(sd.model, 64, 64, 64, "linear", 0)
    with pytest.raises(ValueError, match="blend 'median'"):
        sd.node[GRID].execute(sd.model, 64, 64, 16, "median", 0)


def test_grid_with_masactrl_masks_is_refused_clearly(sd):
    masactrl = masactrl_model(sd, start_step=0)
    masked = sd.node["MasaCtrlMasks"].execute(masactrl, threshold=0.1, map_resolution="1/2",
                                              map_layers="all", source_mask=torch.ones(1, 64, 64),
                                              target_mask=torch.ones(1, 64, 64)).result[0]
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    with pytest.raises(ValueError, match=r"Masks \(MasaCtrl\) takes its masks from cross-attention maps"):
        sd.nodes.common_ksampler(grid(sd, masked), 1, 2, 6.0, "euler", "normal", sd.positive, sd.negative, latent)


def test_grid_through_the_executor(sd):
    from comfy_harness import run_graph

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd.name}},
        "2": {"class_type": GRID, "inputs": {"model": ["1", 0], "tile_width": 64, "tile_height": 64, "overlap": 16,
                                             "blend": "linear", "tiles_per_batch": 0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a dog"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 160, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 1, "steps": 2, "cfg": 6.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "positive": ["3", 0],
                                                   "negative": ["4", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
    }
    outputs = run_graph(sd.comfy, prompt)
    assert len(outputs["8"]["images"]) == 1
