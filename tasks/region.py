"""Region-to-text tasks: the input is a box (pixels, quantized for the user); the output is text."""
from florence.plugins import hookimpl
from florence.task import TextTask


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<REGION_TO_CATEGORY>", "What is the region {input}?", input_kind="region",
                 metrics=("accuracy",), make=lambda a: (a.the_focus().box, a.the_focus().label), one_object=True),
        TextTask("<REGION_TO_DESCRIPTION>", "What does the region {input} describe?", input_kind="region",
                 metrics=("cider",), make=lambda a: (a.the_focus().box, a.the_focus().description), one_object=True),
        TextTask("<REGION_TO_OCR>", "What text is in the region {input}?", input_kind="region",
                 metrics=("ocr_word_f1",), make=lambda a: (a.first_word().box, a.first_word().text)),
    ]
