"""Image captioning at three levels of detail (text output; BLEU-4 and CIDEr)."""
from florence.plugins import hookimpl
from functools import partial

from florence.task import TextTask

METRICS = ("bleu4", "cider")


def _caption(detail, a):
    return None, a.caption(detail)


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<CAPTION>", "What does the image describe?", metrics=METRICS,
                 make=partial(_caption, 0)),
        TextTask("<DETAILED_CAPTION>", "Describe in detail what is shown in the image.", metrics=METRICS,
                 make=partial(_caption, 1)),
        TextTask("<MORE_DETAILED_CAPTION>", "Describe with a paragraph what is shown in the image.", metrics=METRICS,
                 make=partial(_caption, 2)),
    ]
