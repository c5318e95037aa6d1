"""Region-to-text tasks: the input is a box (pixels, quantized for the user); the output is text."""
from functools import partial

from florence.plugins import hookimpl
from florence.task import TextTask


def _about(field, a):  # the focus object's box -> its ``field``
    return a.the_focus().get("box"), a.focus.get(field)


def _first_word(a):
    word = a.first_word()
    return word.box, word.text


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<REGION_TO_CATEGORY>", "What is the region {input}?", input_kind="region",
                 metrics=("accuracy",), make=partial(_about, "label"), one_object=True),
        TextTask("<REGION_TO_DESCRIPTION>", "What does the region {input} describe?", input_kind="region",
                 metrics=("cider",), make=partial(_about, "description"), one_object=True),
        TextTask("<REGION_TO_OCR>", "What text is in the region {input}?", input_kind="region",
                 metrics=("ocr_word_f1",), make=_first_word),
    ]
