"""Every input of every node of the pack, read from its V3 schema, through ComfyUI's own validator and executor
(one executor for all prompts, as a server keeps): a value outside its combo, below its minimum, above its
maximum, of the wrong type (a literal where a connection belongs), not a number, an empty text. Each must end
in a clear error (the message names the input; no Python crash type) or a documented acceptance (what ComfyUI
itself does to the type, input_checks.COMFYUI_CONVERSIONS, or an empty text the input's tooltip explains);
after each, the executor still runs the next prompt and the checkpoint's model is unchanged. A new node is
covered by its schema alone: its other inputs come from providers found by type (ComfyUI's nodes, or the
pack's own nodes with outputs of that type)."""
from __future__ import annotations

import asyncio
import json
import re
import uuid
import warnings
from dataclasses import dataclass, field

import pytest

from comfy_harness import _Server, make_sd15_checkpoint, save_tiny_blip, save_tiny_clip

PACK_MODULE = "masactrl_suite"
SAMPLE_TEXT = "a photo of a corgi"  # for a text input whose default is refused (e.g. prompts, empty by default)
CRASH_TYPES = {"KeyError", "AttributeError", "IndexError", "TypeError", "NameError", "RecursionError",
               "OverflowError", "ZeroDivisionError", "UnboundLocalError", "AssertionError", "MemoryError",
               "_ArrayMemoryError", "NotImplementedError", "StopIteration"}
# Literals sent where a connection belongs, that still crash inside nodes/pose_nodes.py, which calls no
# require() yet (it is another engineer's file): listed so the table shows them, and failing this test once
# they are fixed, so the list shrinks with the wiring.
AWAITING_POSE_NODES_WIRING = set()


# -- the real ComfyUI, with every model folder a node of the pack reads --------------------------------------

@pytest.fixture(scope="module")
def env(comfy, tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("input-models")
    save_tiny_blip(root / "blip" / "tiny-blip")
    save_tiny_clip(root / "clip_vision" / "tiny-clip", comfy.path)
    _save_openpose_weights(root / "openpose")
    added = [("blip", root / "blip"), ("clip_vision", root / "clip_vision"), ("openpose", root / "openpose")]
    for folder, path in added:
        folder_paths.add_model_folder_path(folder, str(path), is_default=True)
    runner = Runner(comfy, make_sd15_checkpoint(comfy))
    yield runner
    for folder, path in added:
        folder_paths.folder_names_and_paths[folder][0].remove(str(path))


def _save_openpose_weights(folder):
    """Random-weight OpenPose networks made with controlnet_aux's classes, saved as the Annotators files."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from controlnet_aux.open_pose.face import FaceNet
            from controlnet_aux.open_pose.model import bodypose_model, handpose_model
    except Exception as error:  # noqa: BLE001 (e.g. a CUDA-only torchvision next to the CPU torch)
        pytest.skip(f"controlnet_aux cannot be imported ({error}); pip install -r requirements-dev.txt")
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for name, net, prefixed in (("body_pose_model.pth", bodypose_model(), True),
                                ("hand_pose_model.pth", handpose_model(), True), ("facenet.pth", FaceNet(), False)):
        state = net.state_dict()
        torch.save({k.split(".", 1)[1] if prefixed else k: v for k, v in state.items()}, folder / name)


# -- running prompts ---------------------------------------------------------------------------------------

@dataclass
class Result:
    valid: bool
    success: bool = False
    errors: list = field(default_factory=list)  # (node id, error type, text)
    outputs: dict = field(default_factory=dict)
    status: list = field(default_factory=list)


class Runner:
    """One PromptExecutor for every prompt, as ComfyUI's server keeps one."""

    def __init__(self, comfy, checkpoint_name):
        self.comfy, self.checkpoint = comfy, checkpoint_name
        self.server = _Server()
        self.executor = comfy.execution.PromptExecutor(self.server)

    def run(self, graph: dict) -> Result:
        prompt_id = str(uuid.uuid4())
        valid = asyncio.run(self.comfy.execution.validate_prompt(prompt_id, graph, None))
        if not valid[0]:
            errors = [(node_id, e["type"], f"{e['message']}: {e['details']}")
                      for node_id, found in valid[3].items() for e in found["errors"]]
            return Result(False, errors=errors or [(None, valid[1]["type"], valid[1]["details"])])
        self.executor.execute(graph, prompt_id, {}, valid[2])
        errors = [(d["node_id"], d["exception_type"].rsplit(".", 1)[-1], d["exception_message"])
                  for event, d in self.executor.status_messages if event == "execution_error"]
        return Result(True, self.executor.success, errors, self.executor.history_result["outputs"],
                      list(self.executor.status_messages))

    def cached_model(self):
        return self.executor.caches.outputs.get("ckpt")[0][0]


# -- inputs and their providers ----------------------------------------------------------------------------

def pack_nodes(comfy) -> dict:
    return {node_id: cls for node_id, cls in comfy.nodes.NODE_CLASS_MAPPINGS.items()
            if cls.__module__.startswith(PACK_MODULE + ".")}


def is_widget(spec) -> bool:
    from comfy_api.latest import io

    return isinstance(spec, io.WidgetInput)


def io_type(spec) -> str:
    return str(spec.get_io_type())


def bad_values(spec) -> list[tuple[str, object]]:
    """The cases for one input, from its schema."""
    from comfy_api.latest import io

    if not is_widget(spec):
        return [("wrong type", "not a connection")]
    if isinstance(spec, io.Combo.Input):
        return [("outside its combo", "bogus-option")]
    if isinstance(spec, (io.Int.Input, io.Float.Input)):
        cases = [("below min", spec.min - 1)] if spec.min is not None else []
        cases += [("above max", spec.max + 1)] if spec.max is not None else []
        cases.append(("wrong type", "not a number"))
        if isinstance(spec, io.Float.Input):
            cases.append(("not a number", "nan"))  # float("nan") passes ComfyUI's conversion and its min/max
        return cases
    if isinstance(spec, io.String.Input):
        return [("wrong type", 12345), ("empty text", "")]
    if isinstance(spec, io.Boolean.Input):
        return [("wrong type", "not a boolean")]
    return []


CORE_PROVIDERS = {
    # type -> alternatives, each (nodes, link); "ckpt" is shared so that the input model can be inspected
    "MODEL": [({}, ["ckpt", 0])],
    "CLIP": [({}, ["ckpt", 1])],
    "VAE": [({}, ["ckpt", 2])],
    "CONDITIONING": [({"text": {"class_type": "CLIPTextEncode", "inputs": {"text": SAMPLE_TEXT, "clip": ["ckpt", 1]}}},
                      ["text", 0])],
    "LATENT": [({"latent2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}}},
                ["latent2", 0]),
               ({"latent1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}},
                ["latent1", 0])],
    "IMAGE": [({"image2": {"class_type": "EmptyImage",
                           "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0x406080}}}, ["image2", 0])],
    "MASK": [({"mask": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}}, ["mask", 0])],
    "SAMPLER": [({"sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}}, ["sampler", 0])],
}


class BaselineError(Exception):
    pass


class Baselines:
    """For each node, a graph giving every input a value: defaults for widgets, a provider for each connection.
    `graph` is the first guess; `working` also makes the node run, switching an input named in an error to its
    next alternative (a batch of one, the pack's MasaCtrl model, a sample text) until it does."""

    def __init__(self, runner: Runner, nodes: dict):
        self.runner, self.nodes = runner, nodes
        self.verified: dict[str, dict] = {}
        self.unrunnable: dict[str, BaselineError] = {}  # searched once: not again for every case
        self.choices: dict[str, dict] = {}

    def alternatives(self, node_id: str, spec, chain: tuple) -> list:
        if is_widget(spec):
            return [spec.default, SAMPLE_TEXT] if io_type(spec) == "STRING" else [spec.default]
        found = [lambda p=p: p for p in CORE_PROVIDERS.get(io_type(spec), [])]
        for producer_id, cls in self.nodes.items():
            if producer_id in chain or producer_id == node_id:
                continue
            for slot, output in enumerate(cls.define_schema().outputs):
                if str(output.get_io_type()) == io_type(spec):
                    found.append(lambda p=producer_id, s=slot: (self.working(p, chain + (node_id,)), [p, s]))
        return found

    def graph(self, node_id: str, chain: tuple = ()) -> dict:
        specs = self.nodes[node_id].define_schema().inputs
        choices = self.choices.setdefault(node_id, {spec.id: 0 for spec in specs})
        graph, inputs = {"ckpt": {"class_type": "CheckpointLoaderSimple",
                                  "inputs": {"ckpt_name": self.runner.checkpoint}}}, {}
        for spec in specs:
            options = self.alternatives(node_id, spec, chain)
            if not options:
                continue
            if is_widget(spec):
                inputs[spec.id] = options[choices[spec.id]]
                continue
            while True:
                try:
                    provided, link = options[choices[spec.id]]()
                    break
                except BaselineError:  # a producer of the pack that does not run itself: the next one
                    if choices[spec.id] + 1 == len(options):
                        raise
                    choices[spec.id] += 1
            graph.update(provided)
            inputs[spec.id] = link
        graph[node_id] = {"class_type": node_id, "inputs": inputs}
        return graph

    def working(self, node_id: str, chain: tuple = ()) -> dict:
        if node_id in self.verified:
            return self.verified[node_id]
        if node_id in self.unrunnable:
            raise self.unrunnable[node_id]
        if len(chain) > 3:
            raise BaselineError(f"{node_id}: providers nest too deep ({' <- '.join(chain)})")
        specs = {spec.id: spec for spec in self.nodes[node_id].define_schema().inputs}
        first_guess = dict(self.choices.get(node_id) or {spec: 0 for spec in specs})
        try:
            return self._discover(node_id, specs, chain)
        except BaselineError as error:
            self.choices[node_id] = first_guess  # graph() keeps giving the first guess
            self.unrunnable[node_id] = error
            raise

    def _discover(self, node_id: str, specs: dict, chain: tuple) -> dict:
        for _ in range(12):
            graph = self.graph(node_id, chain)
            result = self.runner.run(with_output(graph, node_id, self.nodes[node_id]))
            if result.valid and result.success:
                self.verified[node_id] = graph
                return graph
            text = " ".join(custom_text(t, x) for n, t, x in result.errors if n in (node_id, None))
            named = sorted((m.start(), name) for name in specs
                           for m in [re.search(rf"\b{re.escape(name)}\b", text)] if m)
            choices = self.choices[node_id]
            for _, name in named:
                if choices[name] + 1 < len(self.alternatives(node_id, specs[name], chain)):
                    choices[name] += 1
                    break
            else:
                raise BaselineError(f"{node_id}: no inputs found that run it: {result.errors}")
        raise BaselineError(f"{node_id}: no inputs found that run it")


def with_output(graph: dict, node_id: str, cls) -> dict:
    """The graph with an output node showing the node's first output (ComfyUI runs only what outputs need)."""
    if cls.define_schema().is_output_node or not cls.define_schema().outputs:
        return graph
    return {**graph, "show": {"class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}}


# -- one case ------------------------------------------------------------------------------------------------

@dataclass
class Case:
    node_id: str
    input: str
    label: str
    value: object
    outcome: str = ""  # clear error | documented acceptance | raw traceback | silent acceptance | awaiting wiring
    detail: str = ""


def documented(case: Case, spec) -> bool:
    from masactrl_suite.nodes.input_checks import COMFYUI_CONVERSIONS

    if case.label == "wrong type" and io_type(spec) in COMFYUI_CONVERSIONS:
        return True
    return case.label == "empty text" and "empty" in (spec.tooltip or "").lower()


def names_input(text: str, case: Case) -> bool:
    if not re.search(rf"\b{re.escape(case.input)}\b", text):
        return False
    literal = case.value if isinstance(case.value, str) and case.value not in ("", "nan") else None
    return literal is None or literal in text  # a literal sent as a value is quoted back


def custom_text(error_type: str, text: str) -> str:
    """The node's own message of a failed validate_inputs: ComfyUI writes 'input - message' for each input it
    names, so only the message is the node's."""
    if error_type == "custom_validation_failed" and " - " in text:
        return text.split(" - ", 1)[1]
    return text


def classify(case: Case, spec, result: Result) -> None:
    own = [(t, text) for n, t, text in result.errors if n == case.node_id]
    if not result.valid:
        crashed = [text for t, text in own if t.startswith("exception_")]
        clear = [text for t, text in own if names_input(custom_text(t, text), case)]
        case.outcome = "clear error" if clear and not crashed else "raw traceback"
        case.detail = (clear or crashed or [text for _, _, text in result.errors] or ["?"])[0]
    elif result.success:
        case.outcome = "documented acceptance" if documented(case, spec) else "silent acceptance"
    else:
        error_type, text = (own or [(t, text) for _, t, text in result.errors] or [("?", "?")])[0]
        case.outcome = ("clear error" if own and error_type not in CRASH_TYPES and names_input(text, case)
                        else "raw traceback")
        case.detail = f"{error_type}: {text}"
    if (case.node_id, case.input) in AWAITING_POSE_NODES_WIRING and case.outcome == "raw traceback":
        case.outcome = "awaiting wiring"


def model_state(model) -> str:
    """What a node that changed its input model instead of a clone would leave behind."""
    return repr((model.model_options, sorted(model.patches), sorted(model.object_patches), model.wrappers,
                 sorted(model.attachments), model.callbacks))


def run_case(runner: Runner, baselines: Baselines, case: Case, spec, cls) -> list[str]:
    """Classify the case; returns what else went wrong (a dead executor, a changed input model)."""
    def attempt(graph):
        bad = {**graph, case.node_id: {**graph[case.node_id],
                                       "inputs": {**graph[case.node_id]["inputs"], case.input: case.value}}}
        classify(case, spec, runner.run(with_output(bad, case.node_id, cls)))

    graph = baselines.graph(case.node_id)
    attempt(graph)
    if case.outcome == "raw traceback" and case.node_id not in baselines.verified:
        try:  # the first guess of the other inputs may be what failed: retry on inputs that run the node
            graph = baselines.working(case.node_id)
        except BaselineError as error:
            case.detail += f" [and {error}]"
        else:
            attempt(graph)
    problems = []
    ping = {**{k: v for k, v in graph.items() if k != case.node_id},
            "ping": {"class_type": "PreviewAny", "inputs": {"source": f"ping {uuid.uuid4()}"}}}
    if not runner.run(ping).success:
        problems.append(f"{case.node_id}.{case.input} ({case.label}): the next prompt failed")
    return problems


# -- the test ------------------------------------------------------------------------------------------------

def table(cases: list[Case]) -> str:
    columns = ("clear error", "documented acceptance", "raw traceback", "silent acceptance", "awaiting wiring")
    header = ("| node | inputs tried | cases | clear errors | documented acceptances | raw tracebacks | silent "
              "acceptances | awaiting pose_nodes.py |")
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for node_id in dict.fromkeys(c.node_id for c in cases):
        mine = [c for c in cases if c.node_id == node_id]
        counts = [sum(c.outcome == column for c in mine) for column in columns]
        rows.append(f"| {node_id} | {len({c.input for c in mine})} | {len(mine)} | " + " | ".join(map(str, counts))
                    + " |")
    totals = [sum(c.outcome == column for c in cases) for column in columns]
    rows.append(f"| all | {len({(c.node_id, c.input) for c in cases})} | {len(cases)} | "
                + " | ".join(map(str, totals)) + " |")
    return "\n".join(rows)


def test_every_input_of_every_node_fails_clearly_or_is_documented(env):
    nodes = pack_nodes(env.comfy)
    assert len(nodes) >= 21
    baselines = Baselines(env, nodes)
    env.run({"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": env.checkpoint}},
             "show": {"class_type": "PreviewAny", "inputs": {"source": ["ckpt", 0]}}})
    model_before = model_state(env.cached_model())
    cases, problems = [], []
    for node_id, cls in nodes.items():
        for spec in cls.define_schema().inputs:
            for label, value in bad_values(spec):
                case = Case(node_id, spec.id, label, value)
                problems += run_case(env, baselines, case, spec, cls)
                cases.append(case)
                if model_state(env.cached_model()) != model_before:
                    problems.append(f"{node_id}.{spec.id} ({label}): the checkpoint's model was changed")
                    model_before = model_state(env.cached_model())
    print("\n" + table(cases))
    failed = [f"{c.node_id}.{c.input} = {c.value!r} ({c.label}): {c.outcome}: {c.detail}" for c in cases
              if c.outcome in ("raw traceback", "silent acceptance")]
    assert not failed, "\n".join(failed)
    assert not problems, "\n".join(problems)
    wired = AWAITING_POSE_NODES_WIRING - {(c.node_id, c.input) for c in cases if c.outcome == "awaiting wiring"}
    assert not wired, f"now refused clearly: remove {sorted(wired)} from AWAITING_POSE_NODES_WIRING"
    assert all(c.outcome for c in cases) and len({c.node_id for c in cases}) == len(nodes)


# -- the rules a schema cannot state -------------------------------------------------------------------------

def sd_graph(env, positive=(SAMPLE_TEXT,), batch=2, steps=2, **masactrl):
    """Checkpoint -> MasaCtrl -> KSampler -> preview; `positive` prompts stacked with Batch Conditioning."""
    graph = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": env.checkpoint}},
             "negative": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
             "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
             "masactrl": {"class_type": "MasaCtrlMutualSelfAttention",
                          "inputs": {"model": ["ckpt", 0], "schedule_by": "steps", "start_step": 0, "end_step": -1,
                                     "step_interval": 1, "start_percent": 0.0, "end_percent": 1.0, "start_layer": 5,
                                     "end_layer": -1, "encoder": True, "middle": True, "decoder": True,
                                     "source_indices": "0", **masactrl}}}
    for i, text in enumerate(positive):
        graph[f"prompt{i}"] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["ckpt", 1]}}
        if i:
            graph[f"batch{i}"] = {"class_type": "MasaCtrlBatchConditioning",
                                  "inputs": {"source": [f"batch{i - 1}" if i > 1 else "prompt0", 0],
                                             "target": [f"prompt{i}", 0]}}
    graph["sample"] = {"class_type": "KSampler", "inputs": {
        "model": ["masactrl", 0], "positive": [f"batch{len(positive) - 1}" if len(positive) > 1 else "prompt0", 0],
        "negative": ["negative", 0], "latent_image": ["latent", 0], "seed": 0, "steps": steps, "cfg": 5.0,
        "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["sample", 0]}}
    return graph


def error_of(result: Result) -> tuple:
    assert result.valid and not result.success and result.errors, result
    assert [event for event, _ in result.status].count("execution_error") == 1  # what /history's status keeps
    return result.errors[0]


def test_a_schedule_that_cannot_act_on_the_run_is_an_error_when_sampling_starts(env):
    node, kind, message = error_of(env.run(sd_graph(env, start_step=100)))
    assert node == "sample" and kind == "InputError"
    assert "start_step 100 is past the last step of this 2-step run" in message and "below 2" in message
    assert env.run(sd_graph(env, start_step=1)).success  # the last step: it acts once
    # percent: an empty window is refused before anything loads; one between two steps when sampling starts
    refused = env.run(sd_graph(env, schedule_by="percent", start_percent=0.5, end_percent=0.5))
    assert not refused.valid
    assert any("start_percent 0.5 is not below end_percent 0.5" in t for _, _, t in refused.errors)
    node, _, message = error_of(env.run(sd_graph(env, schedule_by="percent", start_percent=0.1, end_percent=0.2)))
    assert node == "sample" and "holds none of this run's 2 steps" in message
    for value in ("weird", "Percent"):  # once a silent steps mode
        refused = env.run(sd_graph(env, schedule_by=value))
        assert any(f"schedule_by '{value}' is not one of its options" in t for _, _, t in refused.errors)


def test_every_image_needs_its_own_prompt(env):
    two = ("a photo of a corgi", "a photo of a corgi jumping")
    node, _, message = error_of(env.run(sd_graph(env, positive=two, batch=3)))
    assert node == "sample" and "the positive conditioning has 2 prompts but the latent batch has 3 images" in message
    assert "image 2 would get prompt 0 (the source's) again" in message
    assert env.run(sd_graph(env, positive=two, batch=2)).success
    graph = sd_graph(env, batch=3)  # the same through Subject Prompts, whose word positions are per prompt
    graph["subject"] = {"class_type": "MasaCtrlSubjectPrompts", "inputs": {
        "clip": ["ckpt", 1], "source_prompt": two[0], "target_prompt": two[1], "source_words": "corgi",
        "target_words": ""}}
    graph["sample"]["inputs"]["positive"] = ["subject", 0]
    assert "has 2 prompts but the latent batch has 3 images" in error_of(env.run(graph))[2]


def test_mask_preview_refuses_maps_of_another_run(env):
    graph = sd_graph(env, positive=("a photo of a corgi", "a photo of a corgi jumping"))
    graph["subject"] = {"class_type": "MasaCtrlSubjectPrompts", "inputs": {
        "clip": ["ckpt", 1], "source_prompt": "a photo of a corgi", "target_prompt": "a photo of a corgi jumping",
        "source_words": "corgi", "target_words": ""}}
    graph["masks"] = {"class_type": "MasaCtrlMasks", "inputs": {
        "model": ["masactrl", 0], "threshold": 0.1, "map_resolution": "1/2", "map_layers": "all",
        "subject": ["subject", 1]}}
    graph["sample"]["inputs"].update(model=["masks", 0], positive=["subject", 0])
    graph["preview"] = {"class_type": "MasaCtrlMaskPreview", "inputs": {"model": ["masks", 0],
                                                                      "samples": ["sample", 0], "step": -1}}
    assert env.run(graph).success
    # The next prompt shows the maps next to a latent no sampler made: the recorded maps are the last run's.
    graph["preview"]["inputs"]["samples"] = ["latent", 0]
    del graph["sample"], graph["show"]
    node, _, message = error_of(env.run(graph))
    assert node == "preview" and "samples is not the LATENT output of the latest sampler run" in message


def repaint_graph(env, mask_value: float, sampler_node: bool) -> dict:
    graph = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": env.checkpoint}},
             "text": {"class_type": "CLIPTextEncode", "inputs": {"text": SAMPLE_TEXT, "clip": ["ckpt", 1]}},
             "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "mask": {"class_type": "SolidMask", "inputs": {"value": mask_value, "width": 64, "height": 64}}}
    if sampler_node:
        graph.update({
            "masked": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["latent", 0], "mask": ["mask", 0]}},
            "sampler": {"class_type": "MasaCtrlRePaintSampler",
                        "inputs": {"sampler_name": "euler", "jump_length": 1, "resamplings": 1}},
            "sigmas": {"class_type": "BasicScheduler",
                       "inputs": {"model": ["ckpt", 0], "scheduler": "normal", "steps": 2, "denoise": 0.5}},
            "repaint": {"class_type": "SamplerCustom", "inputs": {
                "model": ["ckpt", 0], "add_noise": True, "noise_seed": 0, "cfg": 5.0, "positive": ["text", 0],
                "negative": ["text", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
                "latent_image": ["masked", 0]}}})
    else:
        graph["repaint"] = {"class_type": "MasaCtrlRePaint", "inputs": {
            "model": ["ckpt", 0], "positive": ["text", 0], "negative": ["text", 0], "latent_image": ["latent", 0],
            "seed": 0, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.5,
            "jump_length": 1, "resamplings": 1, "mask": ["mask", 0]}}
    graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["repaint", 0]}}
    return graph


@pytest.mark.parametrize("sampler_node", [False, True], ids=["RePaint", "RePaint Sampler"])
def test_repaint_with_nothing_to_regenerate_is_refused(env, sampler_node):
    node, _, message = error_of(env.run(repaint_graph(env, 0.0, sampler_node)))
    assert node == "repaint" and "0 everywhere" in message and "regenerate" in message
    assert env.run(repaint_graph(env, 1.0, sampler_node)).success


def test_an_output_that_cannot_be_produced_is_an_error_in_history_when_connected(env):
    graph = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": env.checkpoint}},
             "image": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1,
                                                             "color": 0}},
             "blip": {"class_type": "MasaCtrlBLIPLoader", "inputs": {"model_name": "tiny-blip"}},
             "caption": {"class_type": "MasaCtrlBLIPCaption", "inputs": {
                 "blip_model": ["blip", 0], "image": ["image", 0], "conditional_text": "", "min_length": 1,
                 "max_length": 5, "num_beams": 1, "prompt_prefix": "", "prompt_suffix": ""}},
             "prompts": {"class_type": "PreviewAny", "inputs": {"source": ["caption", 2]}}}
    unconnected = env.run(graph)  # blocked output, nobody asks for it: the run succeeds and history says why
    assert unconnected.success
    assert "needs a CLIP" in unconnected.outputs["caption"]["unavailable_outputs"][0]
    graph["zero"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["caption", 1]}}
    graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["zero", 0]}}
    # Connected later while ComfyUI reuses the cached result: the consumer is blocked, history keeps the reason.
    cached = env.run(graph)
    assert cached.success and "show" not in cached.outputs
    assert "needs a CLIP" in cached.outputs["caption"]["unavailable_outputs"][0]
    graph["caption"]["inputs"]["max_length"] = 6  # a new result: this run decides, and the prompt fails
    node, kind, message = error_of(env.run(graph))
    assert node == "caption" and kind == "InputError"
    assert message.startswith("BLIP Caption (MasaCtrl): the conditioning output needs a CLIP: connect the clip input")
    graph["caption"]["inputs"]["clip"] = ["ckpt", 1]
    assert env.run(graph).success


def test_scores_refuse_a_connected_dino_output_without_dino(env):
    graph = {"image": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 2,
                                                             "color": 0}},
             "models": {"class_type": "MasaCtrlScoreModelLoader", "inputs": {"clip_name": "tiny-clip",
                                                                             "dino_name": "none"}},
             "scores": {"class_type": "MasaCtrlAlignmentScores", "inputs": {
                 "score_models": ["models", 0], "images": ["image", 0], "prompts": SAMPLE_TEXT,
                 "source_indices": "0"}},
             "table": {"class_type": "PreviewAny", "inputs": {"source": ["scores", 0]}}}
    assert "dino_alignment needs a DINO model" in env.run(graph).outputs["scores"]["unavailable_outputs"][0]
    graph["dino"] = {"class_type": "PreviewAny", "inputs": {"source": ["scores", 4]}}
    graph["scores"]["inputs"]["source_indices"] = "0, 1"  # not the cached result
    graph["image"]["inputs"]["batch_size"] = 3
    node, _, message = error_of(env.run(graph))
    assert node == "scores" and "dino_alignment needs a DINO model" in message


# -- the pose format's bounds, through the Pose Editor ---------------------------------------------------------

def editor_graph(pose_json: str, with_image=False) -> dict:
    graph = {"editor": {"class_type": "MasaCtrlPoseEditor", "inputs": {"pose_json": pose_json}},
             "show": {"class_type": "PreviewImage", "inputs": {"images": ["editor", 1]}}}
    if with_image:
        graph["image"] = {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 2,
                                                                "color": 0}}
        graph["editor"]["inputs"]["image"] = ["image", 0]
    return graph


def frame(width, height, people=()) -> dict:
    return {"people": list(people), "canvas_width": width, "canvas_height": height}


HOSTILE_POSES = [
    (json.dumps(frame(10 ** 7, 10 ** 7)),
     "canvas of 10000000 x 10000000 px; canvas_width and canvas_height must be 1 to 16384"),
    ('{"people": [], "canvas_width": 1e300, "canvas_height": 8}', "canvas of 1e\\+300 x 8 px"),
    ('{"people": [], "canvas_width": ' + "9" * 400 + ', "canvas_height": 8}', "canvas of 999999... \\(400 digits\\)"),
    ("[" * 100_000 + "]" * 100_000, "nests lists or objects more than 8 deep"),
    ('{"people": [], "canvas_width": NaN, "canvas_height": 8}', "needs canvas_width and canvas_height"),
    ('{"people": [], "canvas_width": ' + "9" * 5000 + ', "canvas_height": 8}', "is not valid JSON.*digits"),
    (json.dumps([frame(16384, 16384)] * 17), "canvases hold 4563402752 px together, more than 4294967296"),
    (json.dumps([frame(8, 8)] * 4097), "has 4097 frames; at most 4096"),
    (json.dumps(frame(8, 8, [{}] * 101)), "has 101 people; at most 100"),
    (json.dumps(frame(8, 8, [{"hand_left_keypoints_2d": [1, 1, 1] * 5}])), "has 5 points; OpenPose hands have 21"),
    (json.dumps(frame(8, 8, [{"face_keypoints_2d": [1, 1, 1] * 71}])), "has 71 points; OpenPose faces have at most 70"),
]


@pytest.mark.parametrize("document, message", HOSTILE_POSES,
                         ids=["huge canvas", "1e300", "400 digits", "deep nesting", "NaN", "5000 digits",
                              "17 largest canvases", "4097 frames", "101 people", "short hand", "long face"])
def test_hostile_pose_documents_are_refused_with_their_place(document, message):
    from masactrl_suite.completion.pose_format import PoseFormatError, parse_pose_keypoint

    with pytest.raises(PoseFormatError, match=message):
        parse_pose_keypoint(document, "pose_json")


def test_hostile_pose_documents_fail_clearly_through_the_editor(env):
    for document, message in HOSTILE_POSES[:4]:
        node, kind, text = error_of(env.run(editor_graph(document)))
        assert node == "editor" and kind not in CRASH_TYPES and re.search(f"pose_json.*{message}", text), text


def test_frames_of_one_batch_get_one_canvas_size():
    from masactrl_suite.completion.pose_format import PoseFormatError, batch_canvas, parse_pose_keypoint

    frames = parse_pose_keypoint([frame(8, 8), frame(16, 8)])
    with pytest.raises(PoseFormatError, match=r"pose's frames have different canvas sizes \(8x8, 16x8\); set width"):
        batch_canvas(frames, None, None, "pose", "set width and height")
    assert batch_canvas(frames, 24, 12, "pose", "set width and height") == (24, 12)
    assert batch_canvas(frames[:1], None, None, "pose", "") == (8, 8)


def test_editor_refuses_frames_of_different_sizes_without_an_image(env):
    node, kind, text = error_of(env.run(editor_graph(json.dumps([frame(8, 8), frame(16, 8)]))))
    assert node == "editor" and kind not in CRASH_TYPES and "different canvas sizes" in text
    assert env.run(editor_graph(json.dumps([frame(8, 8), frame(16, 8)]), with_image=True)).success


def test_layer_ranges_written_backwards_say_so():
    from masactrl_suite.attention import SD1_LAYERS, MutualAttentionSchedule
    from masactrl_suite.evaluation.sweep_settings import SweepError, sweep_settings, values_problem

    with pytest.raises(SweepError, match="layers: '5-3' runs backwards; write the smaller layer first: 3-5"):
        sweep_settings(MutualAttentionSchedule(), "layers", "5-3", 20, SD1_LAYERS)
    assert values_problem("layers", "5-3", 20) == "layers: '5-3' runs backwards; write the smaller layer first: 3-5."
    assert values_problem("end_step", "off, 5, -1", 20) is None
    assert "end_step: 20 is out of range" in values_problem("end_step", "20", 20)
    with pytest.raises(SweepError, match="end_step=-1: MasaCtrl's start_step 8 is past the last of 4 steps"):
        sweep_settings(MutualAttentionSchedule(start_step=8), "end_step", "-1", 4, SD1_LAYERS)


def test_numbers_past_any_float_are_refused_not_crashed(comfy):
    masactrl = comfy.nodes.NODE_CLASS_MAPPINGS["MasaCtrlMutualSelfAttention"]
    message = masactrl.validate_inputs(start_step=10 ** 400, end_percent=float("inf"))
    assert "start_step is 10000000... (401 digits), above its maximum 10000" in message
    assert "end_percent is inf; use a number from 0 to 1" in message
