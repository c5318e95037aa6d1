"""Text reading: the whole image's text, and text lines with their quadrilaterals."""
from florence.plugins import hookimpl
from florence.task import QuadTask, TextTask


def _text(a):  # every word, in reading order
    return None, " ".join(w.text for w in a.the_words())


def _lines(a):
    words = a.the_words()
    return None, {"quad_boxes": [w.quad for w in words], "labels": [w.text for w in words]}


class PageText(TextTask):
    """The text of the image, words in reading order separated by spaces; a tiled call reads it from
    the tiles' text lines (pipe(..., tile=...))."""
    tiled_by = "<OCR_WITH_REGION>"

    def from_regions(self, regions):
        return " ".join(r.label for r in regions if r.label)


class TextLines(QuadTask):
    """Text lines and their quadrilaterals: the labels are what is read inside them."""
    labels_read = True


@hookimpl
def florence_register_tasks():
    return [
        PageText("<OCR>", "What is the text in the image?", metrics=("ocr_word_f1", "ocr_cer"), make=_text),
        # {'quad_boxes': [[x1, y1, ..., x4, y4]], 'labels': [line text]}; target: text<loc x8> per line
        TextLines("<OCR_WITH_REGION>", "What is the text in the image, with regions?",
                  metrics=("ocr_region_f1", "ocr_word_f1"), make=_lines),
    ]
