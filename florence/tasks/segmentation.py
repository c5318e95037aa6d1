"""Polygon outputs: referring expression segmentation and region-to-segmentation (mIoU)."""
from florence.plugins import hookimpl
from florence.task import PolygonTask


def _referred(a):  # referring expression -> the object's polygon
    return a.the_focus().get("expression"), {"polygons": [a.focus.get("polygon")], "labels": [""]}


def _region(a):  # box -> the object's polygon
    return a.the_focus().get("box"), {"polygons": [a.focus.get("polygon")], "labels": [""]}


@hookimpl
def florence_register_tasks():
    return [
        PolygonTask("<REFERRING_EXPRESSION_SEGMENTATION>", "Locate {input} in the image with mask",
                    input_kind="text", metrics=("refseg_miou",),
                    make=_referred, one_object=True),
        PolygonTask("<REGION_TO_SEGMENTATION>", "What is the polygon mask of region {input}",
                    input_kind="region", metrics=("refseg_miou",),
                    make=_region, one_object=True),
    ]
