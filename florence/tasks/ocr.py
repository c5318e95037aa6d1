"""Text reading: the whole image's text, and text lines with their quadrilaterals."""
from florence.plugins import hookimpl
from florence.task import QuadTask, TextTask


def _text(a):  # every word, in reading order
    return None, " ".join(w.text for w in a.the_words())


def _lines(a):
    words = a.the_words()
    return None, {"quad_boxes": [w.quad for w in words], "labels": [w.text for w in words]}


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<OCR>", "What is the text in the image?", metrics=("ocr_word_f1", "ocr_cer"),
                 make=_text),
        # {'quad_boxes': [[x1, y1, ..., x4, y4]], 'labels': [line text]}; target: text<loc x8> per line
        QuadTask("<OCR_WITH_REGION>", "What is the text in the image, with regions?",
                 metrics=("ocr_region_f1", "ocr_word_f1"),
                 make=_lines),
    ]
