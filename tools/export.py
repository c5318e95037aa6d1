"""Export a training checkpoint as a Florence-2 folder (weights, config.json, tokenizer) that
``florence.pipeline`` and ``from_pretrained`` load; LoRA adapters are merged.

    python tools/export.py CONFIG CHECKPOINT OUT_DIR [--layout native|microsoft] [--image-size N] [--cfg-options k=v ...]

The folder's ``preprocessor_config.json`` states the image side the model trained at (the config's
``train_dataloader.dataset.image_size``, else 768), so the pipeline resizes to it.
"""
import argparse

from mmengine.config import Config, DictAction

from florence.engine import export_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="a .pth written by tools/train.py")
    parser.add_argument("out_dir")
    parser.add_argument("--layout", choices=["native", "microsoft"], default="native",
                        help="transformers-native (default) or Microsoft's hub layout")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side of the exported preprocessing (default: the training data's image_size)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    size = export_checkpoint(cfg, args.checkpoint, args.out_dir, layout=args.layout, image_size=args.image_size)
    print(f"wrote {args.out_dir} ({args.layout} layout, {size} px images)")


if __name__ == "__main__":
    main()
