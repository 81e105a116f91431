"""Demo inputs for every task, made from the photographs scikit-image ships (no download).

Each entry: the photograph, the task, a mask that makes sense for it (a box or an ellipse over the
region to generate, or a canvas to extend) and a prompt.
"""
import io

from PIL import Image, ImageDraw

from .core.images import CanvasSpec
from .importing import InputSpec

# name, task, region (box or ellipse, in the photograph's pixels) or canvas, prompt
DEMO_INPUTS = [
    ("astronaut", "image_fill", ("box", (270, 370, 512, 512)), "a bouquet of yellow sunflowers"),
    ("coffee", "image_fill", ("box", (430, 30, 590, 230)), "a chocolate croissant on the wooden table"),
    ("chelsea", "image_fill", ("ellipse", (170, 225, 330, 300)), "a red bow tie on the cat's neck"),
    ("rocket", "image_extend", ("canvas", {"ratio": "1:1"}), "a launch pad at night under a starry sky"),
    ("chelsea", "image_extend", ("canvas", {"padding": [0, 0, 256, 0]}), ""),
    ("hubble_deep_field", "image_extend", ("canvas", {"ratio": "16:9"}), ""),
    ("astronaut", "object_removal", ("box", (385, 0, 480, 285)), ""),
    ("coffee", "object_removal", ("ellipse", (280, 150, 350, 265)), ""),
    (
        "brick",
        "text_rendering",
        ("box", (96, 200, 416, 312)),
        'the words "OPEN LATE" painted in white on the brick wall',
    ),
    ("camera", "text_rendering", ("box", (300, 30, 500, 110)), 'a banner in the sky reading "HELLO"'),
]
MAX_SIDE = 512  # demo photographs are scaled down to this for quick generation on a CPU


def _photograph(name: str) -> Image.Image:
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_specs() -> list[InputSpec]:
    specs = []
    for name, task, (kind, region), prompt in DEMO_INPUTS:
        image = _photograph(name)
        spec = InputSpec(entry=f"demo {name} ({task})", task=task, source=_png(image), source_name=f"{name}.png",
                         prompt=prompt, tags=["demo"], metadata={"origin": f"scikit-image data.{name}"})
        if kind == "canvas":
            spec.canvas = CanvasSpec.parse(region, spec.entry)
        else:
            mask = Image.new("L", image.size, 0)
            draw = ImageDraw.Draw(mask)
            (draw.rectangle if kind == "box" else draw.ellipse)(region, fill=255)
            spec.mask, spec.mask_name = _png(mask), f"{name}_mask.png"
        specs.append(spec)
    return specs
