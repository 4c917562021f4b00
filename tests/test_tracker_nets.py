"""mediapipe's face networks in torch: read from the wheel's TFLite files, checked against
TFLite's own interpreter and against mediapipe's graphs on the same picture."""

from pathlib import Path

import numpy as np
import pytest
import torch

mp = pytest.importorskip("mediapipe")

from henshin.errors import ModelError  # noqa: E402
from henshin.nets.facemesh import FaceNetworks, roi_from_points  # noqa: E402
from henshin.nets.tflite import TFLiteNet, read_tflite  # noqa: E402
from henshin.samples import portrait  # noqa: E402

MODULES = Path(mp.__file__).parent / "modules"
DETECTOR = MODULES / "face_detection" / "face_detection_short_range.tflite"
FULL_RANGE = MODULES / "face_detection" / "face_detection_full_range_sparse.tflite"
MESH = MODULES / "face_landmark" / "face_landmark.tflite"


@pytest.fixture(scope="module")
def mesh_net():
    return TFLiteNet(*read_tflite(MESH)).eval()


@pytest.fixture(scope="module")
def nets(mesh_net):
    return FaceNetworks(TFLiteNet(*read_tflite(DETECTOR)).eval(), mesh_net)


@pytest.fixture(scope="module")
def full_nets(mesh_net):
    return FaceNetworks(TFLiteNet(*read_tflite(FULL_RANGE)).eval(), mesh_net)


@pytest.fixture(scope="module")
def picture():
    return np.ascontiguousarray(portrait())


def _frames(*images):
    return torch.stack(
        [torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1) for i in images]
    ).float()


@pytest.mark.parametrize("path, size", [(DETECTOR, 128), (FULL_RANGE, 192), (MESH, 192)])
def test_each_network_matches_tflites_own_interpreter(path, size):
    tflite = pytest.importorskip(
        "tflite_runtime.interpreter", reason="tflite-runtime is not installed"
    )
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    interpreter = tflite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = {
        o["name"]: interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()
    }
    spec, constants = read_tflite(path)
    with torch.no_grad():
        outputs = TFLiteNet(spec, constants)(torch.from_numpy(x), channels_last_input=True)
    for name, out in zip(spec.output_names, outputs, strict=True):
        ref = expected[name]
        # the mesh's 1404 outputs are pixel coordinates of the 192 crop: within 1e-3 of the crop size
        assert np.abs(out.numpy().reshape(ref.shape) - ref).max() < 1e-3 * size, name


def test_detection_equals_mediapipes_short_range_detector(nets, picture):
    with torch.no_grad():
        found = nets.detect(_frames(picture))[0]
    graph = mp.solutions.face_detection.FaceDetection(
        model_selection=0, min_detection_confidence=0.5
    )
    expected = graph.process(picture).detections
    assert len(found.scores) == len(expected) == 1
    box = expected[0].location_data.relative_bounding_box
    ref = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height])
    points = np.array([[k.x, k.y] for k in expected[0].location_data.relative_keypoints])
    assert np.abs(found.boxes[0].numpy() - ref).max() < 1e-4
    assert np.abs(found.keypoints[0].numpy() - points).max() < 1e-4
    assert abs(float(found.scores[0]) - expected[0].score[0]) < 1e-4


@pytest.mark.parametrize(
    "crop", [(slice(None), slice(None)), (slice(None), slice(0, 400)), (slice(0, 400), slice(None))]
)
def test_detection_equals_mediapipes_full_range_detector(full_nets, picture, crop):
    image = np.ascontiguousarray(picture[crop])
    with torch.no_grad():
        found = full_nets.detect(_frames(image))[0]
    graph = mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=0.5
    )
    expected = graph.process(image).detections
    assert full_nets.detector_spec.size == 192 and len(full_nets.anchors) == 2304
    assert len(found.scores) == len(expected) == 1
    box = expected[0].location_data.relative_bounding_box
    ref = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height])
    points = np.array([[k.x, k.y] for k in expected[0].location_data.relative_keypoints])
    # mediapipe's graph runs the sparse model its own way (TFLite's interpreter agrees with ours to
    # 6e-5): scores differ by up to 1e-3, which moves the weighted NMS's mean of the few boxes it
    # keeps. Measured: 1.3e-4 of the frame on the portrait, 3.3e-3 on its 400-pixel crops.
    tolerance = 5e-4 if image.shape[0] == image.shape[1] else 5e-3
    assert np.abs(found.boxes[0].numpy() - ref).max() < tolerance
    assert np.abs(found.keypoints[0].numpy() - points).max() < tolerance
    assert abs(float(found.scores[0]) - expected[0].score[0]) < 2e-3


def test_landmarks_from_the_detection_equal_mediapipes_face_mesh(nets, picture):
    h, w = picture.shape[:2]
    with torch.no_grad():
        frames = _frames(picture)
        found = nets.detect(frames)[0]
        rois = roi_from_points(found.boxes, found.keypoints[:, 0], found.keypoints[:, 1], w, h)
        landmarks, presence = nets.landmarks(frames, torch.zeros(1, dtype=torch.long), rois)
    graph = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=False, max_num_faces=1
    )
    mesh = graph.process(picture).multi_face_landmarks[0].landmark
    ref = np.array([[p.x * w, p.y * h] for p in mesh])
    distance = np.linalg.norm(landmarks[0, :, :2].numpy() - ref, axis=1)
    assert float(presence[0]) > 0.9
    # measured: median 0.007 px, 99th percentile 0.024 px on the 512x512 portrait
    assert np.median(distance) < 0.25 and np.percentile(distance, 99) < 1.0


def test_a_batch_of_frames_and_faces_equals_one_at_a_time(nets, picture):
    flipped = picture[:, ::-1]
    h, w = picture.shape[:2]
    with torch.no_grad():
        frames = _frames(picture, flipped)
        both = nets.detect(frames)
        alone = [nets.detect(_frames(p))[0] for p in (picture, flipped)]
        for b, a in zip(both, alone, strict=True):
            assert torch.allclose(b.boxes, a.boxes, atol=1e-5)
        boxes = torch.cat([d.boxes for d in both])
        points = torch.cat([d.keypoints for d in both])
        rois = roi_from_points(boxes, points[:, 0], points[:, 1], w, h)
        batched, _ = nets.landmarks(frames, torch.tensor([0, 1]), rois)
        single = [
            nets.landmarks(
                frames[i : i + 1],
                torch.zeros(1, dtype=torch.long),
                roi_from_points(boxes[i : i + 1], points[i : i + 1, 0], points[i : i + 1, 1], w, h),
            )[0]
            for i in range(2)
        ]
    assert torch.allclose(batched, torch.cat(single), atol=1e-3)
    # the flipped face's landmarks are the mirror of the original's (a check that frame 1 was used)
    assert abs(float(batched[1, :, 0].mean()) - (w - float(batched[0, :, 0].mean()))) < 2.0


def test_an_operator_the_reader_does_not_run_is_named():
    with pytest.raises(ModelError, match="STRIDED_SLICE"):
        read_tflite(MODULES / "holistic_landmark" / "hand_recrop.tflite")


def test_a_file_that_is_not_tflite_is_one_sentence(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="bad.tflite"):
        read_tflite(bad)


def test_both_networks_export_to_onnx_and_agree(nets, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    for name, net, size in (("detector", nets.detector, 128), ("mesh", nets.mesh, 192)):
        x = torch.rand(2, 3, size, size) * 2 - 1
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["image"],
            dynamo=False,
            dynamic_axes={"image": {0: "batch"}},
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            want = net(x)
        for g, wnt in zip(got, want, strict=True):
            assert np.abs(g - wnt.numpy()).max() < 1e-3


@pytest.mark.parametrize(
    "dtype, tolerance",
    # measured on the portrait: fp16 3.5e-4 and bf16 3.1e-3 of the crop's side (0.05 and 0.45 px)
    [(torch.float16, 1e-3), (torch.bfloat16, 5e-3)],
)
def test_half_precision_networks_agree_with_fp32(nets, picture, dtype, tolerance):
    import copy

    h, w = picture.shape[:2]
    frames = _frames(picture)
    index = torch.zeros(1, dtype=torch.long)
    half = copy.deepcopy(nets).to(dtype)
    with torch.no_grad():
        found = nets.detect(frames)[0]
        rois = roi_from_points(found.boxes, found.keypoints[:, 0], found.keypoints[:, 1], w, h)
        want, _ = nets.landmarks(frames, index, rois)
        try:
            found_half = half.detect(frames)[0]
            got, presence = half.landmarks(frames, index, rois)
        except (RuntimeError, NotImplementedError) as error:
            pytest.skip(f"this torch build has no {dtype} convolution on the CPU: {error}")
    assert half.dtype == dtype and got.dtype == torch.float32
    assert torch.abs(found_half.boxes - found.boxes).max() < 1e-3  # of the frame
    assert float(presence[0]) > 0.9
    gap = torch.abs(got - want)[..., :2].max() / rois.sides[0]
    assert gap < tolerance, float(gap)


def _edited(tmp_path, edit):
    """The full-range model with one thing changed by ``edit(model, subgraph)``, repacked."""
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(FULL_RANGE.read_bytes(), 0)
    edit(model, model.subgraphs[0])
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "edited.tflite"
    path.write_bytes(bytes(builder.Output()))
    return path


def test_sparse_weights_whose_indices_leave_the_tensor_are_refused(tmp_path):
    def edit(model, graph):
        sparse = next(t for t in graph.tensors if t.sparsity is not None)
        indices = sparse.sparsity.dimMetadata[-1].arrayIndices
        indices.values = indices.values.copy()
        indices.values[0] = 200  # the weight has 32 columns

    with pytest.raises(ModelError, match="sparse tensor .*indices"):
        read_tflite(_edited(tmp_path, edit))


def test_an_operator_whose_output_shape_differs_from_the_file_is_named(tmp_path):
    def edit(model, graph):
        resize = next(
            op
            for op in graph.operators
            if model.operatorCodes[op.opcodeIndex].builtinCode == 23  # RESIZE_BILINEAR
        )
        size = graph.tensors[resize.inputs[1]]
        model.buffers[size.buffer].data = np.array([13, 13], np.int32).view(np.uint8)

    with pytest.raises(ModelError, match="RESIZE_BILINEAR gives tensor .* shape"):
        read_tflite(_edited(tmp_path, edit))
