"""The mmengine wrapper's losses: token cross-entropy and the training-only heads (pixel
reconstruction, dense objects) that let a model trained from scratch learn; location-token init."""
import pytest
import torch

import florence
from florence.engine import Florence2Model
from florence.data.multitask import TaskSample
from florence.engine.model import DenseObjectHead, PixelReconstructionHead
from florence.processing.quantizer import NUM_BINS, loc_token

TOKENIZER = dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300)


def test_reconstruction_targets_are_each_tokens_own_cell():
    head = PixelReconstructionHead(dim=8, cell=2)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
    # a 64x96 image whose 2x3 grid cells have distinct constant colours: the target of token k is
    # its own cell's colour repeated (channel-major, as F.unfold orders it)
    pixels = torch.zeros(1, 3, 64, 96)
    for r in range(2):
        for c in range(3):
            pixels[0, :, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = torch.tensor([r, c, r * 3 + c]).view(3, 1, 1)
    embeds = torch.zeros(1, 1 + 6, 8)
    loss = head(pixels, embeds)  # prediction 0: loss = mean of target squares
    expected = torch.tensor([[r, c, r * 3 + c] for r in range(2) for c in range(3)], dtype=torch.float32)
    assert loss.item() == pytest.approx((expected ** 2).mean().item())
    with torch.no_grad():  # a bias equal to one cell's target zeroes that cell's error only
        head.proj.bias.copy_(expected[4].repeat_interleave(4))
    per_token = ((head.proj(embeds[:, 1:]) - expected.repeat_interleave(4, dim=1)) ** 2).mean(-1)
    assert per_token[0, 4] == 0 and (per_token[0, [0, 1, 2, 3, 5]] > 0).all()
    with pytest.raises(ValueError, match="grid"):
        head(pixels, torch.zeros(1, 1 + 5, 8))
    with pytest.raises(ValueError, match="cell"):
        PixelReconstructionHead(dim=8, cell=0)


def test_wrapper_adds_the_pixel_loss_and_keeps_it_out_of_the_model():
    torch.manual_seed(0)
    plain = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER)
    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, reconstruction=dict(weight=2.0, cell=4))
    pixels = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    labels = torch.tensor([[0, 9, 10, 2], [0, 11, 2, -100]])
    losses = model(pixels, ids, labels=labels, mode="loss")
    assert set(losses) == {"loss", "loss_pixels", "num_tokens"}
    assert losses["num_tokens"] == 7  # the targets' tokens that count (one label is padding)
    # same weights, same text loss as without the head
    assert losses["loss"].item() == pytest.approx(plain(pixels, ids, labels=labels, mode="loss")["loss"].item(), rel=1e-5)
    losses["loss_pixels"].backward()
    assert model.model.vision_tower.stem.conv.weight.grad.abs().sum() > 0  # it trains the tower
    assert not any(k.startswith("reconstruction") for k in model.model.state_dict())  # not exported


def _batch():
    return torch.randn(2, 3, 64, 64), torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]), torch.tensor([[0, 9, 10, 2], [0, 11, 2, -100]])


def _optimizer_params(model):
    from mmengine.optim import build_optim_wrapper

    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type="AdamW", lr=1e-3),
                                              paramwise_cfg=dict(bypass_duplicate=True)))
    return {id(p) for g in wrapper.optimizer.param_groups for p in g["params"]}


def test_freeze_means_no_grads_no_optimizer_slot_and_eval_mode():
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER,
                           freeze=("vision_tower", "image_projection"))
    model.train()
    assert not model.model.vision_tower.training and model.model.language_model.training
    pixels, ids, labels = _batch()
    model(pixels, ids, labels=labels, mode="loss")["loss"].backward()
    tower = list(model.model.vision_tower.parameters()) + [model.model.image_projection]
    assert all(p.grad is None and not p.requires_grad for p in tower)
    in_opt = _optimizer_params(model)
    assert not any(id(p) in in_opt for p in tower)
    assert id(model.model.image_proj_norm.weight) in in_opt
    with pytest.raises(ValueError, match="vision_towr.*names no parameters"):
        Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, freeze=("vision_towr",))


def test_lora_trains_only_adapters_validates_targets_and_merges_on_export(tmp_path):
    from florence.models import Florence2ForConditionalGeneration

    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER,
                           lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "qkv"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any(n.startswith("model.vision_tower") for n in trainable)  # the DaViT's qkv too
    with torch.no_grad():  # make the adapters do something (B starts at zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.eval()
    pixels, ids, labels = _batch()
    expected = model(pixels, ids, labels=labels, mode="tensor")
    model.export(tmp_path / "export", image_size=96)
    assert florence.pipeline(str(tmp_path / "export")).processor.image_processor.size == 96  # the trained side
    loaded = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "export").eval()
    assert not any("lora" in k for k in loaded.state_dict())
    got = loaded(pixels, ids, labels=labels).logits
    # the export adds transformers' <image> placeholder as the last row (never generated: suppressed)
    assert got.shape[-1] == expected.shape[-1] + 1 and loaded.generation_config.suppress_tokens == [expected.shape[-1]]
    torch.testing.assert_close(got[..., :-1], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\['k_projj'\] match no linear layer"):
        Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER,
                       lora=dict(r=4, target_modules=["q_proj", "k_projj"]))


def test_gradient_checkpointing_gives_the_same_gradients(saved_activation_bytes):
    grads, saved = [], []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, gradient_checkpointing=ckpt).train()
        torch.manual_seed(1)
        pixels, ids, labels = _batch()
        losses, nbytes = saved_activation_bytes(lambda: model(pixels, ids, labels=labels, mode="loss"))
        losses["loss"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        saved.append(nbytes)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert saved[1] < 0.5 * saved[0], saved  # checkpointing really keeps fewer activations


def test_objects_head_targets_cells_under_each_object():
    head = DenseObjectHead(dim=8, classes=["red circle", "CAT"])
    # a 60x90 image on a 2x3 grid of 30 px cells (centres x = 15, 45, 75; y = 15, 45)
    objects = {"bboxes": [[0, 0, 60, 60], [40, 35, 50, 44], [70, 20, 80, 28]], "labels": ["red circle", "CAT", "CAT"]}
    cls, box = head.targets(objects, (90, 60), 2, 3)
    # the big circle covers the centres (15|45, 15|45); the first word lies inside it and owns its centre
    # cell (45, 45) although it covers no centre; the second word covers no centre and gets its centre's
    # cell (75, 15)
    assert cls.tolist() == [1, 1, 2, 1, 2, 0]
    assert box[0].tolist() == pytest.approx([0, 0, 60 / 90, 1.0]) and box[4].tolist() == pytest.approx([40 / 90, 35 / 60, 50 / 90, 44 / 60])
    cls, _ = head.targets(None, (90, 60), 2, 3)
    assert (cls == -100).all()  # no objects given: nothing counts
    with pytest.raises(ValueError, match="'DOG' is not one of the head's classes"):
        head.targets({"bboxes": [[0, 0, 5, 5]], "labels": ["DOG"]}, (90, 60), 2, 3)
    for bad in ({"bboxes": [[0, 0, 5, 5]], "labels": []}, {"bboxes": [[0, 0, 5]], "labels": ["CAT"]}, {"labels": []}):
        with pytest.raises(ValueError, match="one label per box"):
            head.targets(bad, (90, 60), 2, 3)
    cls, _ = head.targets({"bboxes": [[-50, -40, -20, -30]], "labels": ["CAT"]}, (90, 60), 2, 3)
    assert cls.tolist() == [2, 0, 0, 0, 0, 0]  # a box off the canvas owns the nearest cell, not a wrapped one
    for bad in (dict(classes=[]), dict(classes=["CAT"], weight=0)):
        with pytest.raises(ValueError, match="objects head needs"):
            DenseObjectHead(dim=8, **bad)
    with pytest.raises(ValueError, match="expected 'module:function', got 'red circle'"):
        DenseObjectHead(dim=8, classes="red circle")


def test_objects_head_loss_counts_only_samples_with_objects():
    torch.manual_seed(0)
    head = DenseObjectHead(dim=8, classes=["red circle", "CAT"])
    pixels, embeds = torch.zeros(2, 3, 64, 64), torch.randn(2, 1 + 4, 8)  # 2x2 grid + the pooled token
    one = [({"bboxes": [[0, 0, 30, 30]], "labels": ["CAT"]}, (64, 64))]
    alone = head(pixels[:1], embeds[:1], one)
    mixed = head(pixels, embeds, one + [(None, (64, 64))])
    for k in alone:
        torch.testing.assert_close(mixed[k], alone[k])
    none = head(pixels, embeds, [(None, (64, 64))] * 2)
    assert none["loss_objects"].item() == 0 and none["loss_boxes"].item() == 0
    (none["loss_objects"] + none["loss_boxes"]).backward()  # every parameter gets a (zero) gradient, as DDP needs
    assert all(p.grad is not None for p in head.parameters())


def test_wrapper_adds_the_objects_losses_and_keeps_the_head_out_of_the_model():
    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER,
                           objects=dict(classes="florence.data.synthetic:category_names"))
    pixels, ids, labels = _batch()
    samples = [TaskSample("<OD>", "p", "t", None, (64, 64), extra={"objects": {"bboxes": [[4, 4, 40, 40]],
                                                                               "labels": ["red circle"]}}),
               TaskSample("<OD>", "p", "t", None, (64, 64))]  # no objects: does not count
    losses = model(pixels, ids, labels=labels, data_samples=samples, mode="loss")
    assert set(losses) == {"loss", "loss_objects", "loss_boxes", "num_tokens"}
    (losses["loss_objects"] + losses["loss_boxes"]).backward()
    assert model.model.vision_tower.stem.conv.weight.grad.abs().sum() > 0  # it trains the tower
    assert not any(k.startswith("objects") for k in model.model.state_dict())  # not exported


def test_a_bf16_model_computes_every_loss_in_float32():
    """DeepSpeed's bf16 mode holds the whole module, heads included, in bf16 and casts the inputs:
    the losses still come out in float32 and close to the float32 model's."""
    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, reconstruction=dict(cell=4),
                           objects=dict(classes="florence.data.synthetic:category_names"), accelerate=False)
    pixels, ids, labels = _batch()
    samples = [TaskSample("<OD>", "p", "t", None, (64, 64), extra={"objects": {"bboxes": [[4, 4, 40, 40]],
                                                                               "labels": ["red circle"]}})] * 2
    ref = model(pixels, ids, labels=labels, data_samples=samples, mode="loss")
    model.to(torch.bfloat16)
    got = model(pixels.to(torch.bfloat16), ids, labels=labels, data_samples=samples, mode="loss")
    for k in ("loss", "loss_pixels", "loss_objects", "loss_boxes"):
        assert got[k].dtype == torch.float32 and got[k].item() == pytest.approx(ref[k].item(), rel=0.05), k


def test_coordinate_location_init_makes_a_coordinate_a_linear_read_out():
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, location_init="coordinate")
    ids = model.tokenizer.convert_tokens_to_ids([loc_token(i) for i in range(NUM_BINS)])
    rows = model.model.get_input_embeddings().weight[ids].detach()  # (1000, d)
    k = rows.shape[1] // 8
    for target in (0, 7, 250, 500, 613, 999):
        u = 2 * (target + 0.5) / NUM_BINS - 1
        h = torch.zeros(rows.shape[1])
        h[:k], h[k:2 * k] = 3 * u, 1.0  # the score a*k*(3u*u + (1 - 3u^2)/2) peaks at u*
        assert abs((rows @ h).argmax().item() - target) <= 1
    with pytest.raises(ValueError, match="location_init"):
        Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, location_init="linear")


def test_sinusoidal_location_init_puts_neighbouring_bins_close():
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, location_init="sinusoidal")
    ids = model.tokenizer.convert_tokens_to_ids([loc_token(i) for i in range(NUM_BINS)])
    rows = torch.nn.functional.normalize(model.model.get_input_embeddings().weight[ids].detach(), dim=-1)
    near = (rows[:-1] * rows[1:]).sum(-1)  # cosine of each bin with the next
    far = (rows[:-500] * rows[500:]).sum(-1)
    assert near.min() > 0.9 and far.mean() < 0.5, (near.min(), far.mean())


def test_samples_sharing_an_image_train_as_if_each_had_its_own_copy():
    """Several tasks on one image encode it once (``image_index``): same losses and same gradients
    (fp32) as the batch with the image repeated for each sample, heads included."""
    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, reconstruction=dict(cell=4),
                           objects=dict(classes="florence.data.synthetic:category_names"))
    pixels = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1], [0, 8, 9, 2]])
    labels = torch.tensor([[0, 9, 10, 2], [0, 11, 2, -100], [0, 12, 13, 2]])
    objects = [{"bboxes": [[4, 4, 40, 40]], "labels": ["red circle"]}, {"bboxes": [[10, 20, 60, 50]], "labels": ["CAT"]}]
    index = torch.tensor([0, 0, 1])
    samples = [TaskSample("<OD>", "p", "t", None, (64, 64), extra={"objects": objects[i]}) for i in index]

    def run(**kw):
        model.zero_grad()
        losses = model(input_ids=ids, labels=labels, mode="loss", **kw)
        losses.pop("num_tokens")
        sum(losses.values()).backward()
        return {k: v.item() for k, v in losses.items()}, {n: p.grad.clone() for n, p in model.named_parameters()
                                                          if p.grad is not None}

    shared, shared_grads = run(pixel_values=pixels, image_index=index, data_samples=samples)
    # the reference: one copy of the image per sample for the text; the heads see each image once
    repeated = pixels[index]
    text = model(repeated, ids, labels=labels, mode="loss", data_samples=samples)["loss"]
    assert shared["loss"] == pytest.approx(text.item(), rel=1e-6)
    heads = model(pixels, ids[[0, 2]], labels=labels[[0, 2]], mode="loss", data_samples=[samples[0], samples[2]])
    for k in ("loss_pixels", "loss_objects", "loss_boxes"):
        assert shared[k] == pytest.approx(heads[k].item(), rel=1e-6)
    model.zero_grad()
    (text + heads["loss_pixels"] + heads["loss_objects"] + heads["loss_boxes"]).backward()
    scale = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    for n, g in shared_grads.items():  # summation order differs: fp32 rounding (key biases get ~0 gradients)
        torch.testing.assert_close(g, model.get_parameter(n).grad, rtol=1e-4, atol=1e-6 * scale, msg=n)
    assert model(pixels, ids, labels=labels, image_index=index, mode="tensor").shape[0] == 3  # logits per sample


def test_engine_model_accelerates_on_cpu_unless_told_not_to():
    """``accelerate="auto"`` (default) on a CPU-only machine; ``False`` keeps the plain model, whose
    training loss equals the accelerated one's (fp32)."""
    from florence import accel

    torch.manual_seed(0)
    fast = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER)
    torch.manual_seed(0)
    plain = Florence2Model(model=dict(preset="tiny"), tokenizer=TOKENIZER, accelerate=False)
    assert accel.is_applied(fast.model) == (not torch.cuda.is_available()) and not accel.is_applied(plain.model)
    pixels = torch.randn(2, 3, 64, 64)
    ids, labels = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]), torch.tensor([[0, 9, 10, 2], [0, 11, 2, -100]])
    assert (fast(pixels, ids, labels=labels, mode="loss")["loss"].item()
            == pytest.approx(plain(pixels, ids, labels=labels, mode="loss")["loss"].item(), rel=1e-5))
