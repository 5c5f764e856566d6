"""Real-photo editing on flow models: Flow Inversion (MasaCtrl) and Follow Inversion in the real ComfyUI, with tiny
random-weight Flux.1 and SD3 (MMDiT-X) built from ComfyUI's own classes, sampled by SamplerCustomAdvanced."""
import itertools
from types import SimpleNamespace

import pytest
import torch

from comfy_harness import call_node
from tiny_dit import CONTEXT, POOLED, prompts, tiny_model

FLOW, FOLLOW, DDIM, MASACTRL = ("MasaCtrlFlowInversion", "MasaCtrlFollowInversion", "MasaCtrlDDIMInversion",
                                "MasaCtrlMutualSelfAttention")
STEPS, TEXT = 4, 5
FAMILIES = {"flux": 1.0, "sd3": 3.0}  # guidance-distilled Flux at cfg 1 (no negative); SD3 with true CFG
SOLVERS = ("euler", "rf_solver", "fireflow")


def first_row(conditioning):
    """The source prompt alone (row 0 of a batch of prompts)."""
    return [[c[:1], {k: v[:1] if torch.is_tensor(v) else v for k, v in extra.items()}] for c, extra in conditioning]


@pytest.fixture(scope="module", params=list(FAMILIES))
def flow(comfy, request):
    family = request.param
    positive, negative = prompts(2, TEXT, guidance=3.5 if family == "flux" else None)
    # A VAE-encoded photo's latent, LATENT space (the model shifts and scales it in process_latent_in).
    photo = {"samples": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(7)) * 1.5}
    return SimpleNamespace(comfy=comfy, family=family, model=tiny_model(family), positive=positive,
                           negative=negative if family == "sd3" else None, cfg=FAMILIES[family], photo=photo,
                           node=comfy.nodes.NODE_CLASS_MAPPINGS)


def invert(flow, solver="fireflow", model=None, latent=None, steps=STEPS, scheduler="simple", batch_size=2,
           cfg=None):
    return call_node(flow.comfy, FLOW, model=model or flow.model, positive=first_row(flow.positive),
                     negative=None if flow.negative is None else first_row(flow.negative), latent=latent or flow.photo,
                     steps=steps, cfg=flow.cfg if cfg is None else cfg, scheduler=scheduler, solver=solver,
                     batch_size=batch_size)


@pytest.fixture(scope="module")
def inverted(flow):
    return {solver: invert(flow, solver) for solver in SOLVERS}


def sample_custom(flow, model, noise, latent, sampler="euler", steps=STEPS, scheduler="simple", negative=None):
    """SamplerCustomAdvanced, as the help page wires it: the inversion's noise and latent, a CFG guider,
    BasicScheduler's sigmas."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import BasicScheduler, SamplerCustomAdvanced

    guider = comfy.samplers.CFGGuider(model)
    negative = negative or flow.negative
    guider.inner_set_conds({"positive": flow.positive, **({"negative": negative} if negative else {})})
    guider.set_cfg(flow.cfg)
    sigmas = BasicScheduler().get_sigmas(model, scheduler, steps, 1.0)[0]
    return SamplerCustomAdvanced().sample(noise, guider, comfy.samplers.sampler_object(sampler), sigmas,
                                          latent)[0]["samples"]


def follow(flow, model, inversion, source_index=0):
    return call_node(flow.comfy, FOLLOW, model=model, inversion=inversion, source_index=source_index)[0]


def masactrl(flow, model):
    return call_node(flow.comfy, MASACTRL, model=model, start_step=2, start_layer=0)[0]


def record_calls(model):
    """A clone that records (x, cond_or_uncond) of every model call."""
    import comfy.patcher_extension

    seen, m = [], model.clone()

    def recorder(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        seen.append((x.clone(), tuple(transformer_options["cond_or_uncond"])))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_recorder", recorder)
    return m, seen


# -- (a) each solver against an independent reimplementation ------------------------------------------------

def direct_denoiser(flow):
    """The model's denoised estimate called directly (BaseModel.apply_model with the family's conditioning
    keys), CFG written out: no ComfyUI sampler code in the way. Uncond and cond in one batch, CFG in float32, as
    ComfyUI runs them: the first velocity divides by sigma_min, so round-off there would be amplified ~300x."""
    base = flow.model.model
    cond, extra = first_row(flow.positive)[0]
    kwargs = {"y": extra["pooled_output"]}
    if flow.family == "flux":
        kwargs["guidance"] = torch.tensor([extra["guidance"]])
    uncond = None if flow.negative is None else first_row(flow.negative)[0]

    def denoise(x, sigma):
        with torch.no_grad():
            if uncond is None or flow.cfg == 1.0:
                return base.apply_model(x.float(), torch.full((1,), sigma), c_crossattn=cond, **kwargs).double()
            both = base.apply_model(torch.cat([x, x]).float(), torch.full((2,), sigma),
                                    c_crossattn=torch.cat([uncond[0], cond]),
                                    y=torch.cat([uncond[1]["pooled_output"], kwargs["y"]]))
            u, d = both.chunk(2)
            return (u + (d - u) * flow.cfg).double()
    return denoise


def reference_inversion(denoise, x0, sigmas, clean_sigma, solver):
    """The three solvers from their papers' update rules, float64, levels ascending from clean_sigma."""
    def v(x, s):
        return (x - denoise(x, s)) / s

    levels = [clean_sigma] + [float(s) for s in reversed(sigmas[:-1])]
    x, reused, out = x0, None, [x0]
    for a, b in itertools.pairwise(levels):
        h = b - a
        v_a = reused if reused is not None else v(x, a)
        if solver == "euler":  # Stable Flow's inverse Euler
            x = x + h * v_a
        else:  # RF-Solver's second-order Taylor step, the derivative by the finite difference at the midpoint
            v_mid = v(x + h / 2 * v_a, a + h / 2)
            x = x + h * v_a + h ** 2 / 2 * (v_mid - v_a) / (h / 2)
            if solver == "fireflow":  # FireFlow: the midpoint velocity stands in for the next step's v
                reused = v_mid
        out.append(x)
    return out[::-1]  # highest sigma first, as the trajectory


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_solver_is_its_papers_update_rule_on_the_real_model(flow, inverted, solver):
    _, latent, inversion = inverted[solver]
    trajectory = inversion.trajectory
    sampling = flow.model.get_model_object("model_sampling")
    assert trajectory.clean_sigma == float(sampling.sigma_min) and inversion.solver == solver
    # The photo in the model's space as the node has it (float32): the first velocity divides by sigma_min.
    x0 = flow.model.model.process_latent_in(flow.photo["samples"]).double()
    reference = reference_inversion(direct_denoiser(flow), x0, trajectory.sigmas, trajectory.clean_sigma, solver)
    scale = float(reference[0].abs().max())
    error = max(float((trajectory.latents[i].double() - reference[i]).abs().max()) for i in range(STEPS + 1))
    print(f"\n{flow.family} {solver}: trajectory vs the float64 reference, max abs {error:.2e} (|x| max {scale:.3g})")
    assert error < 1e-5 * max(1.0, scale)
    assert torch.equal(trajectory.clean, x0.float())
    assert latent["samples"].shape == (2, 16, 8, 8) and torch.equal(latent["samples"][1], flow.photo["samples"][0])


def test_solvers_differ_and_cost_what_the_papers_say(flow):
    calls = {}
    for solver in SOLVERS:
        model, seen = record_calls(flow.model)
        invert(flow, solver, model=model)
        calls[solver] = len(seen) // (1 if flow.cfg == 1.0 else len({c for _, c in seen}) or 1)
    assert calls == {"euler": STEPS, "rf_solver": 2 * STEPS, "fireflow": STEPS + 1}, calls


# -- (b) exact reconstruction through Follow Inversion; (c) free sampling for comparison ---------------------

@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
@pytest.mark.parametrize("with_masactrl", [False, True], ids=["plain", "masactrl"])
def test_source_reconstructs_the_photo_exactly(flow, inverted, sampler, with_masactrl):
    noise, latent, inversion = inverted["fireflow"]
    model = follow(flow, masactrl(flow, flow.model) if with_masactrl else flow.model, inversion)
    recorded, seen = record_calls(model)
    out = sample_custom(flow, recorded, noise, latent, sampler)
    photo = flow.photo["samples"][0]
    error = float((out[0] - photo).abs().max())
    print(f"\n{flow.family} {sampler}{' + MasaCtrl' if with_masactrl else ''}: source row vs the photo's latent "
          f"max abs {error:.2e} (|photo| max {float(photo.abs().max()):.2f})")
    assert error < 2e-5 * max(1.0, float(photo.abs().max()))
    assert {c for _, c in seen} == ({(0,)} if flow.cfg == 1.0 else {(1, 0)})
    assert float((out[1] - photo).abs().max()) > 1e-3, "the target is the photo: nothing was sampled"


@pytest.mark.parametrize("flow", ["sd3"], indirect=True)  # guidance-distilled Flux at cfg 1 has no uncond pass
def test_cond_and_uncond_apart_reconstruct_too(flow, inverted):
    noise, latent, inversion = inverted["fireflow"]
    longer = [[torch.zeros(2, TEXT + 3, CONTEXT), {"pooled_output": torch.zeros(2, POOLED)}]]
    model, seen = record_calls(follow(flow, masactrl(flow, flow.model), inversion))
    out = sample_custom(flow, model, noise, latent, negative=longer)  # prompts of different lengths: apart
    assert {c for _, c in seen} == {(0,), (1,)}
    error = float((out[0] - flow.photo["samples"][0]).abs().max())
    print(f"\n{flow.family} cond/uncond apart + MasaCtrl: source row max abs {error:.2e}")
    assert error < 2e-5 * max(1.0, float(flow.photo["samples"].abs().max()))


def test_free_sampling_from_the_inverted_noise_per_solver(flow, inverted):
    """No Follow Inversion: plain euler from the inverted noise lands near the photo only as well as the solver
    inverted the ODE. Reported for comparison: a random-weight model's velocity changes arbitrarily between sigmas,
    so 4 steps come back far from the photo (the solvers' orders are shown on a known flow below)."""
    photo = flow.photo["samples"][0]
    errors = {}
    for solver, (noise, latent, _) in inverted.items():
        out = sample_custom(flow, flow.model, noise, {"samples": latent["samples"][:1]})
        errors[solver] = (float((out[0] - photo).abs().max()), float((out[0] - photo).abs().mean()))
    shown = ", ".join(f"{s} max {m:.3g} mean {a:.3g}" for s, (m, a) in errors.items())
    print(f"\n{flow.family}, {STEPS} steps, cfg {flow.cfg}: free euler reconstruction vs the photo's latent: {shown} "
          f"(|photo| max {float(photo.abs().max()):.2f}, mean {float(photo.abs().mean()):.2f})")
    for solver, (worst, mean) in errors.items():
        assert mean < 3.0 * float(photo.abs().mean()), solver  # sane: finite, no blow-up


def gaussian_flow(mu, tau):
    """The exact denoiser of data N(mu, tau^2) under x = (1 - s) x0 + s eps, and the exact ODE solution through a
    point: x(s) = (1 - s) mu + sd(s) z, sd(s) = sqrt((1 - s)^2 tau^2 + s^2), z fixed along the path."""
    def sd(s):
        return ((1 - s) ** 2 * tau ** 2 + s ** 2) ** 0.5

    def denoise(x, s):
        return mu + (1 - s) * tau ** 2 / sd(s) ** 2 * (x - (1 - s) * mu)

    def exact(x_at, s_at, s):
        z = (x_at - (1 - s_at) * mu) / sd(s_at)
        return (1 - s) * mu + sd(s) * z
    return denoise, exact


def test_solver_orders_on_a_flow_with_a_known_solution():
    """Pure torch: on Gaussian data the inverted noise has a closed form, and the error shrinks with the steps as
    the papers say: first order for inverse Euler, second order for RF-Solver and FireFlow."""
    from masactrl_suite.attention.flow_inversion import flow_invert

    mu = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = mu + 0.5 * torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    denoise, exact = gaussian_flow(mu, 0.5)
    clean = 1e-3
    errors = {}
    for solver in SOLVERS:
        for steps in (8, 16):
            sigmas = torch.cat([torch.linspace(0.95, 0.05, steps, dtype=torch.float64), torch.zeros(1)])
            start = flow_invert(denoise, x0, sigmas, clean, solver).start
            errors[solver, steps] = float((start - exact(x0, clean, 0.95)).abs().max())
    ratios = {solver: errors[solver, 8] / errors[solver, 16] for solver in SOLVERS}
    print("\n" + ", ".join(f"{s}: {errors[s, 8]:.2e} -> {errors[s, 16]:.2e} (x{ratios[s]:.2f})" for s in SOLVERS))
    assert 1.6 < ratios["euler"] < 2.6
    assert ratios["rf_solver"] > 3.3 and ratios["fireflow"] > 3.0
    assert errors["rf_solver", 16] < errors["euler", 16] / 5 and errors["fireflow", 16] < errors["euler", 16] / 5


# -- (d) the NOISE output --------------------------------------------------------------------------------

def test_noise_starts_every_row_on_the_inverted_latent(flow, inverted):
    noise, latent, inversion = inverted["euler"]
    model, seen = record_calls(flow.model)
    sample_custom(flow, model, noise, latent, steps=STEPS)
    first = seen[0][0]
    start = inversion.trajectory.start[0]
    for row in range(first.shape[0]):
        assert torch.equal(first[row], start), row


@pytest.mark.parametrize("latent_kind", ["photo", "empty"])
def test_noise_solves_for_a_first_sigma_below_1(flow, inverted, latent_kind):
    """ComfyUI starts from noise_scaling(s0, noise, latent_in): with s0 < 1 the noise makes up for the latent,
    which CFGGuider shifts into the model's space unless it is all zeros."""
    from masactrl_suite.attention.comfyui_flow_inversion import FlowInversion, InversionNoise
    from masactrl_suite.attention.ddim_inversion import Trajectory

    _, _, inversion = inverted["euler"]
    t = inversion.trajectory
    lower = Trajectory(t.sigmas * 0.8, t.latents, t.clean_sigma)
    noise = InversionNoise(FlowInversion(lower, STEPS, "simple", 1.0, "euler"), flow.model.model.latent_format)
    rows = flow.photo["samples"].repeat(3, 1, 1, 1) * torch.tensor([1.0, -0.5, 2.0]).view(3, 1, 1, 1)
    latent = rows if latent_kind == "photo" else torch.zeros_like(rows)
    generated = noise.generate_noise({"samples": latent})
    latent_in = flow.model.model.process_latent_in(latent) if latent_kind == "photo" else latent
    sampling = flow.model.get_model_object("model_sampling")
    first = sampling.noise_scaling(lower.sigmas[:1].float(), generated, latent_in)
    torch.testing.assert_close(first, t.start.expand(3, -1, -1, -1), rtol=0, atol=1e-5)


# -- progress, interruption, the input model ----------------------------------------------------------------

def test_progress_interruption_and_input_model_unchanged(flow, inverted):
    from comfy_harness import progress_updates, stops_when_interrupted

    assert progress_updates(lambda: invert(flow, "rf_solver")) == [(i, STEPS) for i in range(1, STEPS + 1)]
    assert stops_when_interrupted(lambda: invert(flow, "fireflow"))
    before = (repr(flow.model.model_options), repr(flow.model.wrappers))
    noise, latent, inversion = inverted["fireflow"]
    patched = masactrl(flow, follow(flow, flow.model, inversion))
    first = sample_custom(flow, patched, noise, latent)
    assert torch.equal(sample_custom(flow, patched, noise, latent), first)
    assert (repr(flow.model.model_options), repr(flow.model.wrappers)) == before
    assert torch.equal(invert(flow, "fireflow")[2].trajectory.latents, inversion.trajectory.latents)


# -- (e) bad input -------------------------------------------------------------------------------------------

def test_errors_name_the_input_and_the_fix(flow, inverted):
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

    from masactrl_suite.attention.comfyui_inversion import DDIMInversion

    noise, latent, inversion = inverted["fireflow"]
    vp = ModelSamplingDiscrete().patch(flow.model, "eps", False)[0]
    with pytest.raises(ValueError, match="Flow Inversion \\(MasaCtrl\\): this MODEL samples with .*EPS, not the flow "
                                         "matching.*DDIM Inversion \\(MasaCtrl\\)"):
        invert(flow, model=vp)
    with pytest.raises(ValueError, match="DDIM Inversion.*CONST.*not the variance-preserving.*use Flow Inversion"):
        call_node(flow.comfy, DDIM, model=flow.model, positive=first_row(flow.positive),
                  negative=first_row(flow.positive), latent=flow.photo)
    with pytest.raises(ValueError, match="latent input holds 2 images.*Latent From Batch"):
        invert(flow, latent={"samples": flow.photo["samples"].repeat(2, 1, 1, 1)})
    if flow.negative is not None:
        with pytest.raises(ValueError, match="cfg 3 needs the negative input.*cfg to 1.0"):
            call_node(flow.comfy, FLOW, model=flow.model, positive=first_row(flow.positive), latent=flow.photo,
                      cfg=3.0)
    model = follow(flow, flow.model, inversion)
    schedule = "not in the inversion's schedule.*steps 4, scheduler simple, solver fireflow.*BasicScheduler"
    with pytest.raises(ValueError, match=schedule):
        sample_custom(flow, model, noise, latent, steps=STEPS + 1)
    with pytest.raises(ValueError, match=schedule):
        sample_custom(flow, model, noise, latent, sampler="dpm_2")  # evaluates between the schedule's sigmas
    with pytest.raises(ValueError, match="source_index 2 names image 2, but the latent batch has 2.*raise Flow "
                                         "Inversion \\(MasaCtrl\\)'s batch_size"):
        sample_custom(flow, follow(flow, flow.model, inversion, source_index=2), noise, latent)
    with pytest.raises(ValueError, match="does not start from Flow Inversion's noise.*SamplerCustomAdvanced: Flow "
                                         "Inversion's noise into noise"):
        sample_custom(flow, model, Noise_RandomNoise(0), latent)
    with pytest.raises(ValueError, match=r"latent_image is \[16, 8, 12\] but the inversion's latent is \[16, 8, 8\].*"
                                         "latent output"):
        sample_custom(flow, model, noise, {"samples": torch.zeros(2, 16, 8, 12)})
    ddim_made = DDIMInversion(inversion.trajectory, STEPS, "simple", 1.0)
    with pytest.raises(ValueError, match="Follow Inversion.*made by DDIM Inversion.*flow model.*Flow Inversion"):
        follow(flow, flow.model, ddim_made)
    with pytest.raises(ValueError, match="Follow Inversion.*made by Flow Inversion.*EPS.*DDIM Inversion"):
        follow(flow, vp, inversion)
    with pytest.raises(ValueError, match="connect the inversion output of DDIM Inversion.*or Flow Inversion"):
        follow(flow, flow.model, "not an inversion")


# -- the whole graph through ComfyUI's executor --------------------------------------------------------------

def test_graph_photo_to_edit_through_the_executor(checkpoint):
    """The wiring the help page gives, run by ComfyUI's executor: the random-weight SD1.5 checkpoint switched to
    flow sampling by ComfyUI's ModelSamplingSD3 (no flow checkpoint file is at hand), Flow Inversion's noise and
    latent into SamplerCustomAdvanced, Follow Inversion and MasaCtrl on the guider's model."""
    import numpy as np
    from PIL import Image

    from comfy_harness import run_graph, schema_defaults

    node = checkpoint.node
    steps, cfg = 2, 2.0
    g = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint.name}},
         "flow": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["ckpt", 0], "shift": 3.0}},
         "image": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                          "color": 0xC08040}},
         "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2]}},
         "src": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a sitting corgi", "clip": ["ckpt", 1]}},
         "tgt": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a running corgi", "clip": ["ckpt", 1]}},
         "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
         "pos": {"class_type": "MasaCtrlBatchConditioning", "inputs": {"source": ["src", 0], "target": ["tgt", 0]}},
         "invert": {"class_type": FLOW, "inputs": {
             "model": ["flow", 0], "positive": ["src", 0], "negative": ["neg", 0], "latent": ["encode", 0],
             "steps": steps, "cfg": cfg, "scheduler": "simple", "solver": "fireflow", "batch_size": 2}},
         "follow": {"class_type": FOLLOW, "inputs": {"model": ["flow", 0], "inversion": ["invert", 2],
                                                     "source_index": 0}},
         "masactrl": {"class_type": MASACTRL, "inputs": {**schema_defaults(node[MASACTRL]), "start_step": 1,
                                                         "start_layer": 5, "model": ["follow", 0]}},
         "guider": {"class_type": "CFGGuider", "inputs": {"model": ["masactrl", 0], "positive": ["pos", 0],
                                                          "negative": ["neg", 0], "cfg": cfg}},
         "sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
         "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["flow", 0], "scheduler": "simple",
                                                               "steps": steps, "denoise": 1.0}},
         "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
             "noise": ["invert", 0], "guider": ["guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
             "latent_image": ["invert", 1]}},
         "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "flow_edit"}},
         "photo_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["encode", 0], "vae": ["ckpt", 2]}},
         "photo_save": {"class_type": "SaveImage", "inputs": {"images": ["photo_decode", 0],
                                                              "filename_prefix": "flow_photo"}}}
    outputs = run_graph(checkpoint.comfy, g)
    out_dir = checkpoint.comfy.folder_paths.get_output_directory()

    def images(name):
        return [np.asarray(Image.open(f"{out_dir}/{img['filename']}")).astype(int) for img in outputs[name]["images"]]

    edited, (photo,) = images("save"), images("photo_save")
    assert len(edited) == 2 and edited[0].shape == (64, 64, 3)
    assert np.abs(edited[0] - photo).max() <= 1, "the source image is not the photo's reconstruction"
    assert np.abs(edited[1] - photo).max() > 0, "the target image is the photo unchanged"
