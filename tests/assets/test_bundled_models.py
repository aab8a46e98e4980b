"""The bundled proxy models: files and cards agree, the weights load, and they score what their card says."""

from __future__ import annotations

import pytest

from trtalign.core.io import sha256_file
from trtalign.data.synth import CLASS_NAMES, SynthParams
from trtalign.data.synth.proxy_models import (check_split_params, load_card, proxy_model_path,
                                              score_on_check_split)

TASKS = ["detect", "obb"]
MAX_BYTES = 7 * 1024 * 1024


@pytest.mark.parametrize("task", TASKS)
def test_card_describes_the_weights(task):
    path = proxy_model_path(task)
    card = load_card(task)
    assert path.stat().st_size <= MAX_BYTES
    assert card["sha256"] == sha256_file(path) and card["size_bytes"] == path.stat().st_size
    assert card["task"] == task and card["file"] == path.name and card["names"] == list(CLASS_NAMES)
    assert card["command"].startswith("python benchmarks/train_proxy.py")
    train = card["training"]
    for key in ("device", "epochs_done", "wall_time_s", "batch", "imgsz", "trainer"):
        assert train[key] not in (None, ""), key
    assert SynthParams.from_dict(card["dataset"]["params"]).task == task  # the dataset can be redrawn
    for block in ("metrics", "check"):
        assert 0.0 <= card[block]["map50_95"] <= card[block]["map50"] <= 1.0
    assert (path.with_suffix(".md")).is_file()


@pytest.mark.parametrize("task", TASKS)
def test_bundled_weights_score_as_the_card_says(task, tmp_path):
    pytest.importorskip("ultralytics", reason="scoring needs ultralytics: pip install 'trtalign[ultralytics]'")
    card = load_card(task)
    params, seed, images = check_split_params(card)
    assert images <= 32  # keeps this test short on 2 CPU cores
    scores = score_on_check_split(proxy_model_path(task), params, seed, images, tmp_path, device="cpu")
    assert scores["map50_95"] == pytest.approx(card["check"]["map50_95"], abs=0.01)
    assert scores["map50"] == pytest.approx(card["check"]["map50"], abs=0.01)


@pytest.mark.parametrize("task", TASKS)
def test_bundled_weights_load_with_the_right_head(task):
    ultralytics = pytest.importorskip("ultralytics", reason="needs ultralytics: pip install 'trtalign[ultralytics]'")
    model = ultralytics.YOLO(str(proxy_model_path(task)), task=task)
    assert model.task == task
    assert [model.names[i] for i in range(len(model.names))] == list(CLASS_NAMES)
    head = model.model.model[-1]
    assert head.nc == len(CLASS_NAMES) and type(head).__name__ == ("OBB" if task == "obb" else "Detect")


def test_unknown_task_is_an_error():
    from trtalign.core.errors import InputError

    with pytest.raises(InputError, match="'detect', 'obb'"):
        proxy_model_path("segment")
