"""Inputs that used to give a wrong answer with exit 0 (or a hint-less error) now stop with one clear line, exit 2:
``eval`` on images without labels (mAP nan), ``inspect`` on a text file or an ONNX ("no layer information"), and
images that are Git LFS pointer files ("cannot identify image file")."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ROOT, run_cli

LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 160847\n")


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    """The bundled proxy detector exported at 160 px and a 4-image synthetic dataset (COCO json + YOLO labels)."""
    from trtalign.data.synth import SynthParams, generate_dataset
    from trtalign.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("wrong_answers")
    onnx_path = folder / "proxy.onnx"
    export_onnx(str(ROOT / "trtalign" / "assets" / "models" / "proxy_detect.pt"), onnx_path, imgsz=160)
    generate_dataset(folder / "ds", SynthParams(imgsz=160), val=4, seed=2)
    return folder, onnx_path


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("drop", [
    "yolo",  # data.yaml + images, the labels/ folder missing (and no COCO json)
    "coco",  # a COCO json whose 'annotations' list is empty
])
def test_eval_on_images_without_labels_is_an_error(model_and_data, tmp_path, drop):
    import json

    folder, onnx_path = model_and_data
    data = tmp_path / "ds"
    shutil.copytree(folder / "ds", data)
    if drop == "yolo":
        shutil.rmtree(data / "labels")
        shutil.rmtree(data / "annotations")
    else:
        coco = data / "annotations" / "instances_val.json"
        raw = json.loads(coco.read_text())
        raw["annotations"] = []
        coco.write_text(json.dumps(raw))
    code, out, err = run_cli("eval", str(onnx_path), "--data", str(data), "--precisions", "fp32")
    one_line_error(code, err, "no labelled boxes", "needs ground truth", "4 images")
    assert "nan" not in out


def test_eval_with_labels_still_works(model_and_data):
    folder, onnx_path = model_and_data
    code, out, err = run_cli("eval", str(onnx_path), "--data", str(folder / "ds"), "--precisions", "fp32")
    assert code == 0, err
    assert "ort-fp32" in out and "nan" not in out


def test_inspect_refuses_text_and_onnx(model_and_data, tmp_path):
    _, onnx_path = model_and_data
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not an engine\n")
    code, _, err = run_cli("inspect", str(text))
    one_line_error(code, err, "is a text file, not a TensorRT engine", "expected a TensorRT engine")
    code, _, err = run_cli("inspect", str(onnx_path))
    one_line_error(code, err, "is an ONNX model, not a TensorRT engine", "trtalign build")
    code, _, err = run_cli("inspect", str(tmp_path / "missing.engine"))
    one_line_error(code, err, "file not found")


def test_lfs_pointer_images_say_so(model_and_data, tmp_path):
    """A dataset whose image is a Git LFS pointer (a clone without git-lfs): the error names the file and the fix."""
    folder, onnx_path = model_and_data
    data = tmp_path / "ds"
    shutil.copytree(folder / "ds", data)
    pointer = sorted((data / "images" / "val").iterdir())[1]
    pointer.write_text(LFS_POINTER)
    code, _, err = run_cli("eval", str(onnx_path), "--data", str(data / "data.yaml"), "--precisions", "fp32")
    one_line_error(code, err, pointer.name, "Git LFS pointer", "git lfs pull")


def test_read_image_and_dataset_loader_name_lfs_pointers(tmp_path):
    from trtalign.core.errors import InputError
    from trtalign.core.preprocess import read_image, read_images
    from trtalign.data.datasets import load_dataset

    (tmp_path / "images").mkdir()
    img = tmp_path / "images" / "a.jpg"
    img.write_text(LFS_POINTER)
    with pytest.raises(InputError, match="Git LFS pointer.*git lfs pull"):
        read_image(img)
    with pytest.raises(InputError, match=r"none of the images could be read \(1 are Git LFS pointer"):
        read_images([img])
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match="a.jpg is a Git LFS pointer"):
        load_dataset(tmp_path, fmt="yolo")
    # a corrupt file that is no pointer keeps the plain message
    img.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(InputError) as info:
        read_image(img)
    assert "LFS" not in str(info.value)
