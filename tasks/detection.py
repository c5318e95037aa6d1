"""Box outputs: object detection, dense region captions, region proposals, open-vocabulary
detection (boxes or polygons for a named thing)."""
from florence.plugins import hookimpl
from florence.task import BoxTask, OpenVocabularyTask


class RegionProposal(BoxTask):
    labelled = False  # target: <loc x4> per box, no labels; output labels are ''


@hookimpl
def florence_register_tasks():
    return [
        BoxTask("<OD>", "Locate the objects with category name in the image.", metrics=("coco_bbox_map",)),
        BoxTask("<DENSE_REGION_CAPTION>", "Locate the objects in the image, with their descriptions.",
                metrics=("coco_bbox_map", "cider")),
        RegionProposal("<REGION_PROPOSAL>", "Locate the region proposals in the image.",
                       metrics=("proposal_recall",)),
        OpenVocabularyTask("<OPEN_VOCABULARY_DETECTION>", "Locate {input} in the image.", input_kind="text",
                           metrics=("refexp_acc@0.5",)),
    ]
