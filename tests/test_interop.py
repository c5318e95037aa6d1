"""florence.to_supervision against supervision's own Florence-2 parser on the same outputs: the same
boxes, labels, quads and masks, plus florence's per-object scores as the confidence."""
import random

import numpy as np
import pytest

import florence

sv = pytest.importorskip("supervision", reason="supervision is in the test extra: pip install -e '.[test]'")

TASKS = ["<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REGION_PROPOSAL>",
         "<OPEN_VOCABULARY_DETECTION>", "<OCR_WITH_REGION>", "<REFERRING_EXPRESSION_SEGMENTATION>",
         "<REGION_TO_SEGMENTATION>"]


@pytest.mark.parametrize("token", TASKS)
def test_same_detections_as_supervisions_parser_with_real_confidences(token):
    task = florence.get_task(token)
    size = (320, 240)
    rng = random.Random(token)
    _, annotation = task.example(rng, size)
    text = task.encode_target(annotation, size)
    log_probs = [-0.05 * (i % 7) for i in range(text.count("<loc_"))]
    ours = task.decode_output(text, size, log_probs)  # what the pipeline returns, scores included
    assert ours["scores"]
    reference = sv.Detections.from_vlm(sv.VLM.FLORENCE_2, {token: {k: v for k, v in ours.items() if k != "scores"}},
                                       resolution_wh=size)
    got = florence.to_supervision({token: ours}, image_size=size)
    assert len(got) == len(reference) > 0
    np.testing.assert_allclose(got.xyxy, reference.xyxy, atol=1e-4)
    assert got.data.keys() == reference.data.keys()
    for key in got.data:
        np.testing.assert_array_equal(got.data[key], reference.data[key])
    if reference.mask is None:
        assert got.mask is None
    else:
        np.testing.assert_array_equal(got.mask, reference.mask)
    assert reference.confidence is None  # supervision's parser has no confidences ...
    np.testing.assert_allclose(got.confidence, ours["scores"][:len(got)])  # ... ours are the model's


def test_bad_calls_say_what_is_expected():
    with pytest.raises(ValueError, match="give task="):
        florence.to_supervision({"bboxes": [[1, 2, 3, 4]], "labels": ["a"]})
    with pytest.raises(ValueError, match="not <CAPTION>"):
        florence.to_supervision({"<CAPTION>": {"x": 1}})
    with pytest.raises(ValueError, match="image_size"):
        florence.to_supervision({"<REGION_TO_SEGMENTATION>": {"polygons": [[[1, 1, 5, 1, 5, 5]]], "labels": [""]}})
    assert len(florence.to_supervision({"bboxes": [], "labels": []}, task="<OD>")) == 0
