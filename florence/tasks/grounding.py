"""Caption-to-phrase grounding: boxes for the phrases of a caption (recall@1)."""
from florence.plugins import hookimpl
from florence.task import BoxTask, TaskError

# Phrases the published post-processing drops from grounding output (pronouns, quantifiers,
# "the image", ...), as listed in Microsoft's Florence-2 processor.
NON_OBJECT_PHRASES = frozenset({
    "I", "a", "a group", "a set", "all", "an", "another", "any", "anybody", "anyone", "anything",
    "each", "each other", "everybody", "everyone", "everything", "few", "he", "her", "hers",
    "herself", "him", "himself", "his", "image", "images", "it", "its", "itself", "lots", "many",
    "me", "mine", "myself", "nobody", "none", "one", "one another", "oneself", "other objects",
    "our", "ours", "ourselves", "several", "she", "some", "somebody", "someone", "something",
    "that", "the", "the image", "their", "theirs", "them", "themselves", "these", "they", "this",
    "those", "us", "we", "what", "which", "who", "whom", "whose", "you", "your", "yours",
    "yourself", "yourselves",
})


class PhraseGroundingTask(BoxTask):
    """``{'bboxes', 'labels'}`` with one phrase per box; target: phrase<loc x4>[<loc x4>...]."""
    input_kind = "text"
    ignore = NON_OBJECT_PHRASES

    @staticmethod
    def make(a):  # the first caption, and the box of each object it names
        named = [o for o in a.objects if o.phrase]
        if not named:
            raise TaskError("no object is named by a phrase of the caption")
        return a.caption(0), {"bboxes": [o.get("box") for o in named], "labels": [o.phrase for o in named]}


@hookimpl
def florence_register_tasks():
    return [PhraseGroundingTask("<CAPTION_TO_PHRASE_GROUNDING>", "Locate the phrases in the caption: {input}",
                                metrics=("grounding_recall@1",))]


def __getattr__(name):
    """The task's class had the name of the dataset (``florence.data.PhraseGrounding``)."""
    if name == "PhraseGrounding":
        import warnings

        warnings.warn("florence.tasks.grounding.PhraseGrounding is deprecated: the task's class is "
                      "PhraseGroundingTask (florence.data.PhraseGrounding is the dataset)", DeprecationWarning,
                      stacklevel=2)
        return PhraseGroundingTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
