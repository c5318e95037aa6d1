"""The oracle for prompts and output parsing: transformers' Florence2Processor."""
import pytest


@pytest.fixture(scope="session")
def native_processor(tokenizer):
    """transformers' Florence2Processor (the oracle for prompts and post-processing)."""
    import copy

    from transformers import CLIPImageProcessor
    from transformers import Florence2Processor as NativeProcessor

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    tok.image_token, tok.image_token_id = "<image>", tok.convert_tokens_to_ids("<image>")
    # the published post-processing config; the grounding list as in Microsoft's processor
    banned = ["it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "they",
              "them", "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "its", "myself", "yourself",
              "himself", "herself", "itself", "ourselves", "yourselves", "themselves", "this", "that", "these",
              "those", "who", "whom", "whose", "which", "what", "all", "another", "any", "anybody", "anyone",
              "anything", "each", "everybody", "everyone", "everything", "few", "many", "nobody", "none",
              "several", "some", "somebody", "someone", "something", "each other", "one another", "the image",
              "image", "images", "the", "a", "an", "a group", "other objects", "lots", "a set"]
    config = {"ocr": {"AREA_THRESHOLD": 0.0}, "phrase_grounding": {"banned_grounding_tokens": banned},
              "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {},
              "bboxes": {}, "description_with_bboxes_or_polygons": {}}
    return NativeProcessor(image_processor=CLIPImageProcessor(image_seq_length=577), tokenizer=tok,
                           post_processor_config=config)
