"""Visual question answering: the question is the task's input, the answer is text.

The prompt is the task token followed by the question (``"<VQA>What colour is the car?"``): what
the published Florence-2 processor makes of ``token + question`` for any task it does not expand,
and the convention of Florence-2 fine-tuning recipes (``"<DocVQA>" + question``).

The ground truth of a question is an answer string or the list of answers annotators gave (VQAv2
has ten): the metrics score a prediction against all of them, and the training target is the most
common one (ties: the first given).
"""
from collections import Counter

from florence.plugins import hookimpl
from florence.task import WORDS, TaskError, TextTask


class AnswerTask(TextTask):
    """Text answer to a text question; the annotation is an answer or a list of accepted answers."""
    input_kind = "text"

    def encode_target(self, annotation, image_size) -> str:
        if isinstance(annotation, (list, tuple)):
            if not annotation or not all(isinstance(a, str) for a in annotation):
                raise TaskError(f"{self.token}: annotation must be an answer or a non-empty list of answer strings, "
                                f"got {annotation!r:.200}")
            annotation = Counter(a.strip() for a in annotation).most_common(1)[0][0]
        return super().encode_target(annotation, image_size)

    def example(self, rng, image_size):
        return f"What colour is the {rng.choice(WORDS)}?", rng.choice(WORDS)


@hookimpl
def florence_register_tasks():
    return [
        AnswerTask("<VQA>", "<VQA>{input}", metrics=("vqa_accuracy",)),
        AnswerTask("<DOCVQA>", "<DOCVQA>{input}", metrics=("anls",)),
    ]
