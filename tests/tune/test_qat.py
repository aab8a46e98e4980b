"""QAT: fake-quant primitives, site mapping and the torch-vs-exported-Q/DQ equivalence on a tiny generated model,
bad input, and resume after an interruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")
onnx = pytest.importorskip("onnx")

# A tiny YOLOv8-style detector with every structure the placement handles: convs, C2f (split, residual Add, Concat),
# SPPF (one MaxPool module called three times), nn.Upsample, Concat modules, a two-level Detect head with DFL.
TINY_YAML = """
nc: 8
scales:
  t: [0.33, 0.125, 256]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 1, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 2, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 1, SPPF, [512, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 1, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 1, C2f, [512]]
  - [[9, 12], 1, Detect, [nc]]
"""
IMGSZ = 64


def _root_conftest():
    """tests/conftest.py as a module: ``from conftest import ...`` finds whichever conftest pytest imported last
    (tests/serve/conftest.py in a whole-suite run)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "trtalign_tests_root_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint, FP32 ONNX with NMS, analysis, calibrated ranges, calibration images) of the tiny model."""
    root_conftest = _root_conftest()
    make_images, make_scored_checkpoint = root_conftest.make_images, root_conftest.make_scored_checkpoint
    from trtalign.export.calibrate import calibrate
    from trtalign.export.onnx_export import export_onnx
    from trtalign.export.units import analyze_graph

    root = tmp_path_factory.mktemp("qat_tiny")
    (root / "tiny.yaml").write_text(TINY_YAML)
    images = make_images(root / "images", count=8)
    ckpt = make_scored_checkpoint(str(root / "tiny.yaml"), root / "tiny.pt", images, imgsz=IMGSZ)
    fp32 = root / "tiny.onnx"
    export_onnx(ckpt, fp32, imgsz=IMGSZ)
    ranges = calibrate(fp32, images, method="minmax", num=8)
    return ckpt, fp32, analyze_graph(str(fp32)), ranges, images


def _prepare(tiny, plan):
    from trtalign.export.adapters import load_adapter
    from trtalign.tune.qat_quant import make_fake_quant_model, map_sites

    ckpt, _, analysis, ranges, _ = tiny
    adapter = load_adapter(ckpt)
    model = adapter.torch_model(fuse=True)
    site_map = map_sites(model, adapter.to_raw_onnx(IMGSZ), analysis, plan, ranges, (IMGSZ, IMGSZ))
    return model, site_map, make_fake_quant_model(model, site_map)


def _dq_reads(model) -> dict:
    """{(consumer node, input index): DQ node name} of every activation DQ (weights excluded) + {DQ: axis}."""
    produced = {o: n for n in model.graph.node for o in n.output}
    reads, axes = {}, {}
    for n in model.graph.node:
        for k, t in enumerate(n.input):
            p = produced.get(t)
            if p is not None and p.op_type == "DequantizeLinear":
                reads[(n.name, k)] = p.name
                axes[p.name] = [a.i for a in p.attribute if a.name == "axis"]
    return reads, axes


def _scales(model) -> dict:
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.name: inits[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear"}


# ------------------------------------------------------------------------------------------------- primitives
def test_fake_quant_rounds_half_to_even_clamps_and_passes_gradients_straight_through():
    from trtalign.tune.qat_quant import fake_quant, fake_quant_weight

    scale = torch.tensor(1.0)
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 200.0, -200.0, 126.6], requires_grad=True)
    y = fake_quant(x, scale)
    # half-to-even like QuantizeLinear; saturation to [-128, 127]
    assert y.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 127.0, -128.0, 127.0]
    y.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1, 1, 0, 0, 1]  # clipped straight-through estimator

    s = torch.tensor(0.1, requires_grad=True)
    fake_quant(torch.linspace(-20, 20, 101), s, learn=True).pow(2).sum().backward()
    assert s.grad is not None and float(s.grad) != 0.0  # LSQ: the scale learns

    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    wq = fake_quant_weight(w)
    step = w.detach().abs().amax(dim=(1, 2, 3)) / 127.0
    levels = wq.detach() / step[:, None, None, None]
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # per output channel grid of max|w| / 127
    assert torch.allclose(wq.detach().abs().amax(dim=(1, 2, 3)), w.detach().abs().amax(dim=(1, 2, 3)))
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


# ------------------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("plan_kind", [
    "int8",       # every unit INT8, head outputs included
    "fallback",   # a fallback plan: a concat unit, a residual conv and a head output conv left in FP16 stay float
])
def test_fake_quant_model_equals_exported_qdq_onnx(tiny, tmp_path, plan_kind):
    from trtalign.export.qdq import insert_qdq
    from trtalign.export.units import Plan
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.tune.qat import export_qat
    from trtalign.tune.qat_quant import trained_ranges

    ckpt, fp32, analysis, ranges, _ = tiny
    plan = Plan(units={u.name: "int8" for u in analysis.units})
    if plan_kind == "fallback":
        for name in ("model.4.concat", "model.4.m.0.cv2.conv", "model.13.cv3.1.cv3.1.2"):
            plan.units[name] = "fp16"
    model, site_map, fq = _prepare(tiny, plan)

    # "training": move every scale and weight so that the export must carry the trained values, not calibration
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fq.scales.values():
            p.mul_(0.7 + 0.6 * torch.rand((), generator=gen))
        for p in model.parameters():
            p.add_(0.01 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    fq.eval()
    paths = export_qat(model, fq, site_map, ranges, plan, ckpt, IMGSZ, tmp_path, "tiny.qat")
    exported = onnx.load(str(paths["onnx"]))

    # 1. same raw head outputs: exact up to float rounding; a value that crosses a rounding boundary may move one
    #    step, so the bound is one INT8 step of output0 per channel group (boxes: max|box| / 127; scores: 1 / 127)
    diffs = []
    with_raw = onnx.load(str(paths["onnx"]))  # the raw head tensor as an extra output (decode + NMS stay)
    with_raw.graph.output.append(onnx.helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, None))
    with OrtRunner(with_raw, name="ort-int8sim") as runner:
        for seed in range(4):
            x = np.random.default_rng(seed).uniform(0, 1, (1, 3, IMGSZ, IMGSZ)).astype(np.float32)
            with torch.no_grad():
                y_torch = fq(torch.from_numpy(x))[0].numpy()
            y_onnx = runner.infer({"images": x})["output0"]
            assert y_torch.shape == y_onnx.shape
            d = np.abs(y_torch - y_onnx)
            assert d[:, :4].max() <= np.abs(y_onnx[:, :4]).max() / 127.0
            assert d[:, 4:].max() <= 1.0 / 127.0
            diffs.append(np.median(d))
    assert max(diffs) < 1e-4

    # 2. the Q/DQ sites are exactly insert_qdq's for this plan (PTQ with calibrated ranges): same consumers reading
    #    the same DQ, same axes
    reference, _ = insert_qdq(str(fp32), ranges, plan)
    reads, axes = _dq_reads(exported)
    ref_reads, ref_axes = _dq_reads(reference)
    assert reads == ref_reads
    assert axes == ref_axes
    # ... and the torch model quantizes exactly the activation slots that read a DQ
    weight_dqs = {f"{n.input[1]}_DequantizeLinear" for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"}
    act_reads = {k: v for k, v in reads.items() if v not in weight_dqs}
    torch_slots = {(s.node, s.slot): f"{s.tensor}_DequantizeLinear" for s in site_map.sites}
    assert torch_slots == act_reads
    int8_convs = {n for u in analysis.units if plan.units[u.name] == "int8" and u.kind == "conv" for n in u.nodes}
    assert set(site_map.weight_calls.values()) == int8_convs
    weight_dq_consumers = {node for (node, k), dq in reads.items() if dq in weight_dqs}
    assert weight_dq_consumers == int8_convs

    # 3. tied scales: one torch scale per group, every member's ONNX scale equal to it (float32, bit for bit)
    scales = _scales(exported)
    amax = fq.amax()
    assert len(site_map.groups) < len({s.tensor for s in site_map.sites})  # there are tied groups
    for root, members in site_map.groups.items():
        expected = np.float32(amax[root] / 127.0)
        for m in members:
            if f"{m}_DequantizeLinear" in scales:
                assert scales[f"{m}_DequantizeLinear"] == expected, m
    ref_scales = _scales(insert_qdq(str(fp32), trained_ranges(ranges, amax, site_map.groups), plan)[0])
    assert {k: v for k, v in scales.items() if k not in weight_dqs} == \
        {k: v for k, v in ref_scales.items() if k not in weight_dqs}


def test_training_forward_reaches_every_site(tiny):
    from trtalign.export.units import Plan

    analysis = tiny[2]
    _, _, fq = _prepare(tiny, Plan(units={u.name: "int8" for u in analysis.units}))
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    fq.train()
    fq.check_coverage(x)  # raises when a site of the eval-mode mapping is not met in a training forward
    fq.eval()
    fq.check_coverage(x)


def test_distillation_loss_is_zero_for_the_teacher_itself_and_grows_with_a_perturbation(tiny):
    """The student equal to the teacher: every term 0 (KL, not cross-entropy); weights perturbed, or the fake-quant
    student: positive, and its gradient reaches the weights."""
    from trtalign.export.adapters import load_adapter
    from trtalign.export.units import Plan
    from trtalign.tune.qat_distill import distill_loss, make_teacher

    ckpt, _, analysis, _, _ = tiny
    model = load_adapter(ckpt).torch_model(fuse=True)
    teacher = make_teacher(model)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        target = teacher(x)
    model.train()
    loss, parts = distill_loss(model(x), target)
    assert set(parts) == {"cls", "box"}  # a detect head: no angle
    assert abs(float(loss)) < 1e-6 and all(abs(v) < 1e-6 for v in parts.values())

    with torch.no_grad():  # a perturbed student: every term positive
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss, parts = distill_loss(model(x), target)
    assert float(loss) > 1e-3 and all(v > 0 for v in parts.values())

    _, _, fq = _prepare(tiny, Plan(units={u.name: "int8" for u in analysis.units}))  # fresh float model + fake quant
    fq.train()
    for p in fq.model.parameters():
        p.requires_grad_(True)  # as run_qat does (the fused model comes frozen)
    loss, _ = distill_loss(fq(x), target)
    assert float(loss.detach()) > 0  # what QAT distils away
    loss.backward()
    grads = [p.grad for p in fq.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_feature_distillation_reads_the_head_inputs_and_is_zero_only_for_the_teacher(tiny):
    """``head_inputs_hook`` captures the feature maps entering the head (one per level, not the head's in-place
    rewritten list); ``feature_loss`` is 0 for the teacher against itself and positive for the fake-quant student,
    with a gradient that reaches the backbone."""
    from trtalign.export.adapters import load_adapter
    from trtalign.export.units import Plan
    from trtalign.tune.qat_distill import feature_loss, head_inputs_hook, make_teacher

    ckpt, _, analysis, _, _ = tiny
    teacher = make_teacher(load_adapter(ckpt).torch_model(fuse=True))
    t_feats, handle = head_inputs_hook(teacher)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        teacher(x)
    assert len(t_feats) == 2 and all(f.shape[0] == 2 and f.shape[1] > 8 for f in t_feats)  # two levels, features
    assert float(feature_loss(t_feats, [f.clone() for f in t_feats])) == 0.0

    _, _, fq = _prepare(tiny, Plan(units={u.name: "int8" for u in analysis.units}))
    fq.train()
    for p in fq.model.parameters():
        p.requires_grad_(True)
    s_feats, s_handle = head_inputs_hook(fq.model)
    fq(x)
    loss = feature_loss(s_feats, t_feats)
    assert float(loss.detach()) > 0
    loss.backward()
    assert float(fq.model.model[0].conv.weight.grad.abs().sum()) > 0  # through the whole backbone
    handle.remove()
    s_handle.remove()


def test_distillation_loss_rejects_outputs_that_are_not_a_detect_head():
    from trtalign.core.errors import ModelError
    from trtalign.tune.qat_distill import distill_loss

    with pytest.raises(ModelError, match="boxes"):
        distill_loss([torch.zeros(1, 8, 4, 4)], [torch.zeros(1, 8, 4, 4)])


def test_qat_settings_loss_lists_the_valid_choices():
    from trtalign.core.errors import ConfigError
    from trtalign.tune.qat import QatSettings

    assert QatSettings().loss == "auto" and QatSettings().lr is None and QatSettings().epochs is None
    with pytest.raises(ConfigError, match="auto, distill, labels, both"):
        QatSettings(loss="kd")
    with pytest.raises(ConfigError, match="lr_final"):
        QatSettings(lr_final=1.5)


def test_auto_recipe_resolves_per_task_and_keeps_explicit_choices():
    """``loss: auto`` / unset lr / unset epochs become the measured recipe of the checkpoint's task (detect: distill,
    OBB: both), an explicit loss gets that task's rate for it, explicit values are never replaced."""
    from trtalign.tune.qat import RECIPES, QatSettings, resolve_recipe

    detect = resolve_recipe(QatSettings(), "detect")
    obb = resolve_recipe(QatSettings(), "obb")
    assert (detect.loss, detect.lr, detect.epochs) == (RECIPES["detect"]["loss"], RECIPES["detect"]["lr"]["distill"],
                                                       RECIPES["detect"]["epochs"])
    assert (detect.loss, obb.loss) == ("distill", "both")  # the measured winners differ per task
    assert obb.lr == RECIPES["obb"]["lr"]["both"] and obb.epochs == RECIPES["obb"]["epochs"]
    assert resolve_recipe(QatSettings(), "segment").loss == "distill"  # no recipe of its own: detect's
    explicit = resolve_recipe(QatSettings(loss="labels", lr=3e-4, epochs=5), "obb")
    assert (explicit.loss, explicit.lr, explicit.epochs) == ("labels", 3e-4, 5)
    loss_only = resolve_recipe(QatSettings(loss="both"), "detect")
    assert loss_only.loss == "both" and loss_only.lr == RECIPES["detect"]["lr"]["both"]
    lr_only = resolve_recipe(QatSettings(lr=2e-3), "obb")
    assert (lr_only.loss, lr_only.lr) == ("both", 2e-3)
    # augmentations follow the loss unless set: distillation matches the teacher on undistorted images
    assert (detect.augment, obb.augment) == (RECIPES["detect"]["augment"]["distill"], RECIPES["obb"]["augment"]["both"])
    assert detect.augment is False and explicit.augment is True
    assert resolve_recipe(QatSettings(augment=True), "detect").augment is True
    # the resolved settings are plain valid settings: resolving again changes nothing
    assert resolve_recipe(detect, "obb") == detect


@pytest.mark.parametrize("augment", [False, True])
def test_training_images_are_only_letterboxed_without_augmentation(tiny, tmp_path, augment):
    """``augment: false`` gives the same training tensor for an image in every epoch (letterbox only: what inference
    sees, and what distillation should match); with augmentations the same image differs between epochs."""
    from trtalign.data.synth import SynthParams, generate_dataset
    from trtalign.export.adapters import load_adapter
    from trtalign.tune.qat import QatSettings, find_data_yaml, resolve_recipe, train_images_of
    from trtalign.tune.qat_train import build_train_loader

    ckpt = tiny[0]
    data = tmp_path / "data"
    generate_dataset(data, SynthParams(imgsz=IMGSZ), train=6, val=2, seed=3, show_progress=False)
    ydata, images = train_images_of(find_data_yaml(data))
    settings = resolve_recipe(QatSettings(augment=augment, batch=2), "detect")
    loader = build_train_loader(load_adapter(ckpt).torch_model(fuse=True), ydata, images, IMGSZ, settings, "detect")

    def epoch_images(epoch):
        out = {}
        for batch in loader(epoch):
            out.update({Path(f).name: img.clone() for f, img in zip(batch["im_file"], batch["img"])})
        return out

    first, second = epoch_images(0), epoch_images(1)
    assert sorted(first) == sorted(second) and len(first) == 6
    same = [torch.equal(first[k], second[k]) for k in first]
    assert all(same) if not augment else not all(same)


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_one_clear_error(tiny, tmp_path):
    from trtalign.core.errors import ConfigError, InputError, UnsupportedError
    from trtalign.export.units import Plan, save_plan
    from trtalign.tune.qat import QatSettings, run_qat

    ckpt, fp32, analysis, _, _ = tiny
    data = tmp_path / "data"
    (data / "images" / "train").mkdir(parents=True)
    (data / "images" / "val").mkdir(parents=True)
    (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n  0: a\n")
    with pytest.raises(UnsupportedError, match="ultralytics"):
        run_qat(fp32, data, tmp_path / "out1", imgsz=IMGSZ)
    with pytest.raises(InputError, match="no images"):
        run_qat(ckpt, data, tmp_path / "out2", imgsz=IMGSZ)
    other = Plan(units={"model.0.conv": "int8", "model.99.conv": "int8"})
    save_plan(other, tmp_path / "plan.json")
    from trtalign.tune.qat import resolve_plan

    with pytest.raises(ConfigError, match="plan does not match the model"):
        resolve_plan(analysis, QatSettings(start="plan", plan=tmp_path / "plan.json"))


# ----------------------------------------------------------------------------------------------------- resume
@pytest.mark.slow  # three short runs: ~40 s of CPU
def test_interrupted_run_resumes_from_its_checkpoint(tiny, tmp_path):
    """Interrupted after epoch 1 of 2 (KeyboardInterrupt from the epoch callback, as Ctrl-C would), the same call
    resumes at epoch 2 and ends with exactly the weights and scales of an uninterrupted run."""
    from trtalign.data.synth import SynthParams, generate_dataset
    from trtalign.tune.qat import CHECKPOINT, QatSettings, run_qat

    ckpt, _, _, ranges, _ = tiny
    data = tmp_path / "data"
    generate_dataset(data, SynthParams(imgsz=IMGSZ), train=8, val=3, seed=1, show_progress=False)
    settings = QatSettings(epochs=2, batch=4, lr=1e-3, scale_lr=1e-3)

    def interrupt(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_qat(ckpt, data, tmp_path / "a", settings, imgsz=IMGSZ, ranges=ranges, on_epoch_end=interrupt)
    assert (tmp_path / "a" / CHECKPOINT).is_file()
    assert not (tmp_path / "a" / "model.qat.qdq.onnx").exists()  # nothing final was written
    resumed = run_qat(ckpt, data, tmp_path / "a", settings, imgsz=IMGSZ, ranges=ranges)
    assert resumed.resumed_from_epoch == 1
    assert [e.epoch for e in resumed.epochs] == [0, 1, 2]

    straight = run_qat(ckpt, data, tmp_path / "b", settings, imgsz=IMGSZ, ranges=ranges)
    assert straight.resumed_from_epoch == 0
    assert resumed.epochs[1].to_dict() | {"seconds": 0} == straight.epochs[1].to_dict() | {"seconds": 0}
    a = torch.load(str(resumed.files["checkpoint"]), weights_only=False)["model"].state_dict()
    b = torch.load(str(straight.files["checkpoint"]), weights_only=False)["model"].state_dict()
    from trtalign.export.adapters import load_adapter

    start = load_adapter(ckpt).torch_model(fuse=True).state_dict()  # the float network QAT started from
    assert a.keys() == b.keys() == start.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], start[k]) for k in a)  # it did train
    assert Path(resumed.files["ranges"]).read_text() == Path(straight.files["ranges"]).read_text()

    # a checkpoint of other settings is refused, not silently mixed in
    from trtalign.core.errors import InputError

    with pytest.raises(InputError, match="other"):
        run_qat(ckpt, data, tmp_path / "a", QatSettings(epochs=2, batch=4, lr=5e-4), imgsz=IMGSZ, ranges=ranges)


def test_report_section_has_the_curve_the_epochs_and_the_comparison(tmp_path):
    from trtalign.eval.report import Report
    from trtalign.tune.qat import QatEpoch, QatResult
    from trtalign.tune.qat_report import add_qat_section

    epochs = [QatEpoch(0, None, 0.61, 0.80, 3.0), QatEpoch(1, 2.5, 0.63, 0.81, 40.0, 1e-4),
              QatEpoch(2, 2.4, 0.645, 0.82, 41.0, 1e-6)]
    result = QatResult(model="m.pt", task="detect", plan_units={"a": "int8"}, int8_mac_fraction=1.0, epochs=epochs,
                       files={}, settings={"learn_scales": True}, wall_s=90.0, val_images=50,
                       notes={"sites": 112, "scale_groups": 44})
    report = add_qat_section(Report("t"), result, {"FP32": 0.65, "PTQ, same plan": 0.61, "QAT": 0.645})
    html = report.render()
    assert [s.title for s in report.sections] == ["Quantization-aware training", "QAT loss and validation mAP per epoch",
                                                  "QAT epochs", "QAT beside FP32 / PTQ"]
    assert "0.6100 before" in html and "0.6450 after" in html and "<img" in html
    assert html.count("<tr>") >= 3 + 1 + 3 + 1
    report.write(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text() == html
