"""Region-to-text tasks: the input is a box (pixels, quantized for the user); the output is text."""
from florence.plugins import hookimpl
from florence.task import TextTask


@hookimpl
def florence_register_tasks():
    return [
        TextTask("<REGION_TO_CATEGORY>", "What is the region {input}?", input_kind="region",
                 metrics=("accuracy",)),
        TextTask("<REGION_TO_DESCRIPTION>", "What does the region {input} describe?", input_kind="region",
                 metrics=("cider",)),
        TextTask("<REGION_TO_OCR>", "What text is in the region {input}?", input_kind="region",
                 metrics=("ocr_word_f1",)),
    ]
