"""Polygon outputs: referring expression segmentation and region-to-segmentation (mIoU)."""
from florence.plugins import hookimpl
from florence.task import PolygonTask


@hookimpl
def florence_register_tasks():
    return [
        PolygonTask("<REFERRING_EXPRESSION_SEGMENTATION>", "Locate {input} in the image with mask",
                    input_kind="text", metrics=("refseg_miou",)),
        PolygonTask("<REGION_TO_SEGMENTATION>", "What is the polygon mask of region {input}",
                    input_kind="region", metrics=("refseg_miou",)),
    ]
