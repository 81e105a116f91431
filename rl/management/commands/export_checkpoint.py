from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from rl.core.export import ExportError, export_policy
from rl.exports import export_filename, find_checkpoint
from rl.models import ExportFormat


class Command(BaseCommand):
    help = ("Write a policy checkpoint as a LoRA file (diffusers and ComfyUI) or as the merged transformer, here "
            "(on a host that sees the checkpoint's files).")

    def add_arguments(self, parser):
        parser.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                            help="checkpoint:ID, run:ID, a bare ID, an RL run's name or the checkpoint's "
                                 "generator name")
        parser.add_argument("--format", required=True, choices=ExportFormat.values)
        parser.add_argument("--out", required=True, type=Path, help=(
            "lora: the .safetensors file (or a folder to put it in); merged: a folder for "
            "FluxTransformer2DModel.from_pretrained, or a .safetensors path for the one weights file"))
        parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                            help="merged only: the saved dtype (auto: the generator's, bfloat16 when that is auto)")

    def handle(self, *args, **options):
        try:
            checkpoint = find_checkpoint(options["checkpoint"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        format = options["format"]
        problem = checkpoint.export_problem(format)
        if problem:
            raise CommandError(problem)
        out = options["out"].expanduser()
        if format == ExportFormat.LORA and (out.is_dir() or not out.suffix):
            out = out / export_filename(checkpoint, format)
        try:
            result = export_policy(checkpoint.generator.settings, format, out, options["dtype"])
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        if format == ExportFormat.LORA:
            target = result["applies_to"]
            on = target["transformer"] or target["base"]
            self.stdout.write(f"Wrote the LoRA of {checkpoint} to {out}: {result['modules']} modules, rank up to "
                              f"{result['rank']}; it goes on {on}")
        else:
            self.stdout.write(f"Wrote the merged transformer of {checkpoint} to {out}: "
                              f"{result['parameters']:,} parameters in {result['dtype']}, "
                              f"{result['modules_merged']} LoRA modules merged")
