"""RePaint: the jump schedule against the paper's definition, the resampling loop (pure torch), and the
sampler and node in the real ComfyUI: model evaluations, the kept region, progress, interruption, errors,
and the photo pipeline with pixels outside the mask bit-identical. ComfyUI tests skip, with the reason
printed, where no checkout is found."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from masactrl_suite.completion.repaint import (NoiseLevels, RePaintScheduleError, denoising_steps, jump_schedule,
                                               repaint)

REPAINT, SAMPLER = "MasaCtrlRePaint", "MasaCtrlRePaintSampler"


def paper_schedule(steps: int, jump: int, resamplings: int) -> list[int]:
    """RePaint's schedule built stretch by stretch, in the paper's time t (steps = pure noise, 0 = clean):
    each complete j-step stretch (kj, (k+1)j] counted from t = 0 is traversed r times (down j steps, then
    r - 1 times: jump up j, down j again); what lies above the highest multiple of j is traversed once."""
    stretches = steps // jump if resamplings > 1 else 0
    times = list(range(steps, stretches * jump - 1, -1))
    for k in reversed(range(stretches)):
        down = list(range((k + 1) * jump - 1, k * jump - 1, -1))
        times += down + ([(k + 1) * jump] + down) * (resamplings - 1)
    return [steps - t for t in times]


@pytest.mark.parametrize("steps,jump,resamplings", [(10, 10, 1), (10, 2, 3), (20, 5, 3), (7, 3, 2), (6, 6, 4),
                                                    (25, 10, 10), (250, 10, 10), (5, 1, 2), (3, 50, 1)])
def test_jump_schedule_is_the_papers(steps, jump, resamplings):
    visits = jump_schedule(steps, jump, resamplings)
    assert visits == paper_schedule(steps, jump, resamplings)
    assert visits[0] == 0 and visits[-1] == steps
    moves = [b - a for a, b in zip(visits, visits[1:])]
    assert all(m == 1 or m == -jump for m in moves)  # one reverse step down, or one jump of j up
    assert denoising_steps(steps, jump, resamplings) == steps + (resamplings - 1) * jump * (steps // jump) * (
        resamplings > 1)


def test_every_step_runs_r_times_when_j_divides_the_steps():
    assert denoising_steps(250, 10, 10) == 2500  # the paper's setting: T = 250, j = 10, r = 10
    assert denoising_steps(20, 5, 3) == 60


@pytest.mark.parametrize("steps,jump,resamplings,match", [
    (10, 11, 2, "jump_length 11 does not fit a schedule of 10 steps"),
    (10, 0, 2, "jump_length 0 does not fit"),
    (10, 2, 0, "resamplings is 0"),
    (0, 2, 2, "at least one step"),
])
def test_impossible_schedules_are_refused(steps, jump, resamplings, match):
    with pytest.raises(RePaintScheduleError, match=match):
        jump_schedule(steps, jump, resamplings)


def test_repaint_loop_keeps_the_known_region_and_counts_steps():
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])
    levels = NoiseLevels(torch.ones(5), sigmas)
    visits = jump_schedule(4, 2, 3)
    x0 = torch.randn(1, 4, 6, 6)
    keep = torch.zeros(1, 1, 6, 6)
    keep[..., :3, :] = 1
    calls, progress = [], []
    generator = torch.Generator().manual_seed(0)

    def reverse_step(x, position):
        calls.append(position)
        return x * float(sigmas[position + 1] / sigmas[position]) - 0.1  # shrinks the noise, adds a bias

    out = repaint(reverse_step, torch.randn(1, 4, 6, 6) * 4, x0, keep, levels, visits,
                  lambda: torch.randn(1, 4, 6, 6, generator=generator), lambda d, t, x: progress.append((d, t)))
    assert len(calls) == denoising_steps(4, 2, 3) == 12
    assert calls == [a for a, b in zip(visits, visits[1:]) if b > a]
    assert progress == [(i, 12) for i in range(1, 13)]
    assert torch.equal(out[..., :3, :], x0[..., :3, :])  # the known region: exactly x0 at the end
    assert not torch.allclose(out[..., 3:, :], x0[..., 3:, :])


def test_forward_jump_has_the_diffusion_marginals():
    """q(x_b | x_a) composed with x_a ~ N(s_a x0, std_a^2) must give N(s_b x0, std_b^2), for epsilon
    models (s = 1) and flow models (s = 1 - sigma)."""
    for scale, std in ((torch.ones(3), torch.tensor([3.0, 1.0, 0.0])),
                       (torch.tensor([0.2, 0.6, 1.0]), torch.tensor([0.8, 0.4, 0.0]))):
        levels = NoiseLevels(scale, std)
        x0 = torch.full((200_000,), 0.7)
        generator = torch.Generator().manual_seed(1)
        x_a = levels.noised(x0, 1, torch.randn(x0.shape, generator=generator))
        x_b = levels.forward(x_a, 1, 0, torch.randn(x0.shape, generator=generator))
        assert abs(float(x_b.mean()) - float(scale[0]) * 0.7) < 0.01
        assert abs(float(x_b.std()) - float(std[0])) < 0.01


# ---- in the real ComfyUI ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd(checkpoint):
    encode = checkpoint.encode
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) / 0.18215 * 0.5
    mask = torch.zeros(1, 64, 64)
    mask[:, 40:, :] = 1  # regenerate the bottom: latent rows 5-7
    return SimpleNamespace(**vars(checkpoint), positive=encode("a photo of a dog, full body"), negative=encode(""),
                           latent={"samples": latent}, mask=mask)


def repaint_node(sd, model=None, steps=4, sampler="euler", denoise=0.6, jump=2, resamplings=3, seed=0, mask=None,
                 latent=None):
    return sd.node[REPAINT].execute(model or sd.model, sd.positive, sd.negative, latent or sd.latent, seed, steps,
                                    6.0, sampler, "normal", denoise, jump, resamplings,
                                    sd.mask if mask is None else mask).result[0]["samples"]


def counted(sd):
    """The model with a counter of denoising evaluations (UNet calls that include the cond half)."""
    import comfy.patcher_extension

    calls = []

    def count(executor, x, t, *args, **kwargs):
        if 0 in kwargs.get("transformer_options", args[3] if len(args) > 3 else {}).get("cond_or_uncond", [0]):
            calls.append(float(t[0]))
        return executor(x, t, *args, **kwargs)
    model = sd.model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "count", count)
    return model, calls


@pytest.mark.parametrize("sampler", ["euler", "ddpm", "heun", "euler_ancestral", "dpmpp_2m", "uni_pc"])
def test_model_evaluations_follow_the_schedule_and_the_kept_region_stays(sd, sampler):
    model, calls = counted(sd)
    out = repaint_node(sd, model, steps=4, sampler=sampler, jump=2, resamplings=3)
    visits = jump_schedule(4, 2, 3)
    descents = [b for a, b in zip(visits, visits[1:]) if b > a]
    per_step = {"heun": lambda end: 1 if end == 4 else 2}.get(sampler, lambda end: 1)  # heun's last step: euler
    assert len(calls) == sum(per_step(end) for end in descents) == (12 if sampler != "heun" else 21)
    assert torch.allclose(out[..., :5, :], sd.latent["samples"][..., :5, :], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out[..., 5:, :], sd.latent["samples"][..., 5:, :], atol=1e-3)
    assert torch.isfinite(out).all()


def test_resampling_changes_the_result_and_seeds_reproduce(sd):
    first = repaint_node(sd, resamplings=3, seed=5)
    assert torch.equal(first, repaint_node(sd, resamplings=3, seed=5))
    assert not torch.equal(first, repaint_node(sd, resamplings=3, seed=6))
    assert not torch.allclose(first, repaint_node(sd, resamplings=1, seed=5), atol=1e-4)


def test_progress_covers_the_resampled_schedule_and_interrupt_stops_it(sd):
    from comfy_harness import progress_updates, stops_when_interrupted

    # 12 reverse steps on a 4-step bar
    assert progress_updates(lambda: repaint_node(sd, steps=4, jump=2, resamplings=3)) == [(i, 4) for i in range(1, 5)]
    assert stops_when_interrupted(lambda: repaint_node(sd))


def test_bad_inputs_name_the_input_and_the_fix(sd):
    with pytest.raises(ValueError, match="jump_length 8 does not fit a schedule of 4 steps"):
        repaint_node(sd, steps=4, jump=8)
    with pytest.raises(ValueError, match="the mask is 32x32 but the latent is for a 64x64 image"):
        repaint_node(sd, mask=torch.ones(1, 32, 32))
    with pytest.raises(ValueError, match="no mask: connect the mask input"):
        sd.node[REPAINT].execute(sd.model, sd.positive, sd.negative, sd.latent, 0, 4, 6.0, "euler", "normal", 0.5,
                                 2, 2).result
    with pytest.raises(ValueError, match="3 masks for 1 latents"):
        repaint_node(sd, mask=torch.ones(3, 64, 64))


def sampler_custom_graph(sd, noise_mask: bool) -> dict:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd.name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a dog"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}},
        "6": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["4", 0], "mask": ["5", 0]}},
        "7": {"class_type": SAMPLER, "inputs": {"sampler_name": "ddpm", "jump_length": 2, "resamplings": 2}},
        "8": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 4,
                                                         "denoise": 0.5}},
        "9": {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": True, "noise_seed": 1, "cfg": 6.0, "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["7", 0], "sigmas": ["8", 0],
            "latent_image": ["6", 0] if noise_mask else ["4", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    return graph


def test_sampler_through_sampler_custom_and_the_executor(sd):
    from comfy_harness import run_graph

    assert len(run_graph(sd.comfy, sampler_custom_graph(sd, noise_mask=True))["11"]["images"]) == 1
    with pytest.raises(RuntimeError, match="the latent has no noise mask"):
        run_graph(sd.comfy, sampler_custom_graph(sd, noise_mask=False))


def test_photo_pipeline_keeps_every_pixel_outside_the_mask(sd, tmp_path):
    """LoadImage -> Extend Canvas (down) -> VAE Encode -> RePaint -> VAE Decode -> Paste Back -> SaveImage:
    the saved PNG's pixels outside the mask are the photo's, byte for byte."""
    import folder_paths
    from comfy_harness import run_graph

    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(f"{folder_paths.get_input_directory()}/repaint-photo.png")
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd.name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a dog, full body"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "repaint-photo.png"}},
        "5": {"class_type": "MasaCtrlExtendCanvas", "inputs": {
            "image": ["4", 0], "mode": "pixels", "left": 0, "top": 0, "right": 0, "bottom": 16,
            "target_width": 512, "target_height": 512, "aspect": "2:3", "anchor": "top", "fill": "edge",
            "feather": 8, "seam_band": 8, "seed": 0}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": REPAINT, "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["6", 0], "seed": 0,
            "steps": 4, "cfg": 6.0, "sampler_name": "ddpm", "scheduler": "normal", "denoise": 0.6,
            "jump_length": 2, "resamplings": 2, "mask": ["5", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "MasaCtrlPasteBack", "inputs": {"original": ["5", 0], "generated": ["8", 0],
                                                             "mask": ["5", 1]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "repaint-test"}},
    }
    saved = run_graph(sd.comfy, prompt)["10"]["images"][0]
    result = np.array(Image.open(f"{folder_paths.get_output_directory()}/{saved['subfolder']}/{saved['filename']}"))
    assert result.shape == (64, 64, 3)
    untouched = 48 - 8 - 8  # seam band and feather reach 16 rows into the photo
    assert np.array_equal(result[:untouched], photo[:untouched])
    assert not np.array_equal(result[48:], np.repeat(photo[-1:], 16, axis=0))  # the new area was generated
