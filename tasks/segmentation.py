"""Polygon outputs: referring expression segmentation and region-to-segmentation (mIoU)."""
from florence.plugins import hookimpl
from florence.task import PolygonTask, TaskError


def _outline(a):
    polygon = a.the_focus().polygon
    if not polygon:
        raise TaskError("the object has no polygon")
    return {"polygons": [polygon], "labels": [""]}


@hookimpl
def florence_register_tasks():
    return [
        PolygonTask("<REFERRING_EXPRESSION_SEGMENTATION>", "Locate {input} in the image with mask",
                    input_kind="text", metrics=("refseg_miou",),
                    make=lambda a: (a.the_focus().expression, _outline(a)), one_object=True),
        PolygonTask("<REGION_TO_SEGMENTATION>", "What is the polygon mask of region {input}",
                    input_kind="region", metrics=("refseg_miou",),
                    make=lambda a: (a.the_focus().box, _outline(a)), one_object=True),
    ]
