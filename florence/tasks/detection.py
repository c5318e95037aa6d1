"""Box outputs: object detection, dense region captions, region proposals, open-vocabulary
detection (boxes or polygons for a named thing)."""
from functools import partial

from florence.plugins import hookimpl
from florence.task import BoxTask, OpenVocabularyTask


class RegionProposal(BoxTask):
    labelled = False  # target: <loc x4> per box, no labels; output labels are ''

    @staticmethod
    def make(a):  # every object and every word is a region
        boxes = [o.get("box") for o in a.objects] + [w.box for w in a.words]
        return None, {"bboxes": boxes, "labels": [""] * len(boxes)}


def _boxes(field, a):  # every object, named by ``field``
    return None, {"bboxes": [o.get("box") for o in a.objects], "labels": [o.get(field) for o in a.objects]}


def _named(a):  # every object called what the focus object is called
    name = a.the_focus().get("label")
    boxes = [o.get("box") for o in a.objects if o.label == name] or [a.focus.get("box")]
    return name, {"bboxes": boxes, "bboxes_labels": [name] * len(boxes), "polygons": [], "polygons_labels": []}


@hookimpl
def florence_register_tasks():
    return [
        BoxTask("<OD>", "Locate the objects with category name in the image.", metrics=("coco_bbox_map",),
                make=partial(_boxes, "label")),
        BoxTask("<DENSE_REGION_CAPTION>", "Locate the objects in the image, with their descriptions.",
                metrics=("coco_bbox_map", "cider"), make=partial(_boxes, "description")),
        RegionProposal("<REGION_PROPOSAL>", "Locate the region proposals in the image.",
                       metrics=("proposal_recall",)),
        OpenVocabularyTask("<OPEN_VOCABULARY_DETECTION>", "Locate {input} in the image.", input_kind="text",
                           metrics=("refexp_acc@0.5",), make=_named, one_object=True),
    ]
