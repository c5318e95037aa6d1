"""Image captioning at three levels of detail (text output; BLEU-4 and CIDEr)."""
from florence.plugins import hookimpl
from florence.task import TextTask

METRICS = ("bleu4", "cider")


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<CAPTION>", "What does the image describe?", metrics=METRICS,
                 make=lambda a: (None, a.caption(0))),
        TextTask("<DETAILED_CAPTION>", "Describe in detail what is shown in the image.", metrics=METRICS,
                 make=lambda a: (None, a.caption(1))),
        TextTask("<MORE_DETAILED_CAPTION>", "Describe with a paragraph what is shown in the image.", metrics=METRICS,
                 make=lambda a: (None, a.caption(2))),
    ]
