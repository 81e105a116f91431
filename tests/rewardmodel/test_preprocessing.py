"""The judge's torch preprocessing reproduces transformers' Qwen2-VL image processor and lets
gradients through to the pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

# The processor class transformers' `Qwen2VLImageProcessor` resolves to without torchvision, which
# this project does not install; both backends share `smart_resize` and the patch layout.
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from rewardmodel.core.preprocessing import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VisionGeometry,
    preprocess,
    resize,
    target_size,
)

GEOMETRIES = {
    "qwen2-vl": VisionGeometry(),
    "patch16": VisionGeometry(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32,
                              max_pixels=32 * 32 * 64),
    "merge1-t1": VisionGeometry(patch_size=14, merge_size=1, temporal_patch_size=1,
                                image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
}


def processor_for(geometry: VisionGeometry) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(
        patch_size=geometry.patch_size, merge_size=geometry.merge_size,
        temporal_patch_size=geometry.temporal_patch_size, min_pixels=geometry.min_pixels,
        max_pixels=geometry.max_pixels, image_mean=list(geometry.image_mean), image_std=list(geometry.image_std),
    )


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128.0)], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """The processor rescales 8-bit values by 1/255: feed the same values."""
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize(
    "name,size",
    [("qwen2-vl", (56, 56)), ("qwen2-vl", (84, 140)), ("qwen2-vl", (224, 168)),
     ("patch16", (64, 96)), ("patch16", (160, 32)), ("merge1-t1", (56, 70))],
)
def test_equals_the_transformers_processor_at_the_target_size(name, size):
    geometry = GEOMETRIES[name]
    assert target_size(*size, geometry) == size  # already at its target size: no resize on either side
    pixels = random_rgb(*size, seed=size[0])
    expected = processor_for(geometry)(images=Image.fromarray(pixels), return_tensors="pt")
    pixel_values, image_grid_thw = preprocess([as_tensor(pixels)], geometry)
    assert image_grid_thw.dtype == torch.long
    assert image_grid_thw.tolist() == expected["image_grid_thw"].tolist()
    assert pixel_values.shape == expected["pixel_values"].shape
    assert pixel_values.shape[1] == 3 * geometry.temporal_patch_size * geometry.patch_size**2
    torch.testing.assert_close(pixel_values, expected["pixel_values"].float(), rtol=0, atol=1e-5)


def test_several_images_of_different_sizes_are_concatenated_in_order():
    geometry = GEOMETRIES["qwen2-vl"]
    arrays = [random_rgb(56, 84, 1), random_rgb(112, 56, 2), random_rgb(56, 56, 3)]
    expected = processor_for(geometry)(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")
    pixel_values, image_grid_thw = preprocess([as_tensor(a) for a in arrays], geometry)
    assert image_grid_thw.tolist() == expected["image_grid_thw"].tolist() == [[1, 4, 6], [1, 8, 4], [1, 4, 4]]
    torch.testing.assert_close(pixel_values, expected["pixel_values"].float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [
    (512, 512), (1024, 1024),  # the platform's fill and removal canvases
    (576, 1024), (1024, 576), (768, 1024), (512, 768),  # extend canvases (16:9, 4:3, 3:2 and portrait)
    (60, 50), (100, 130), (31, 47), (300, 200),  # small and odd sizes, up and down in either side
])
def test_resized_images_equal_the_processor(size):
    """The processor resizes the 8-bit image with Pillow's bicubic; the judge's resize gives the
    same values (its forward pass is Pillow's), to float rounding after normalisation."""
    geometry = GEOMETRIES["qwen2-vl"]
    pixels = random_rgb(*size)
    expected = processor_for(geometry)(images=Image.fromarray(pixels), return_tensors="pt")
    pixel_values, image_grid_thw = preprocess([as_tensor(pixels)], geometry)
    assert image_grid_thw.tolist() == expected["image_grid_thw"].tolist()
    assert target_size(*size, geometry) != size  # a real resize
    torch.testing.assert_close(pixel_values, expected["pixel_values"].float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size, target", [((60, 50), (56, 56)), ((300, 200), (308, 196)), ((31, 47), (56, 84))])
def test_the_gradient_is_that_of_pillows_bicubic_without_rounding(size, target):
    """The backward pass is linear: x.grad . x = v . soft(x) for a vector-Jacobian product with v.
    soft(x) must be Pillow's own bicubic on floats (mode "F", no 8-bit rounding) of each channel."""
    image = torch.rand(3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = resize(image, target)
    v = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (out * v).sum().backward()
    pillow = np.stack([np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize(
        (target[1], target[0]), Image.BICUBIC)) for channel in image.detach().numpy()])
    assert float((image.grad * image.detach()).sum()) == pytest.approx(float((v.numpy() * pillow).sum()), rel=1e-5)


@pytest.mark.parametrize("size", [(56, 56), (90, 70)])
def test_gradients_reach_the_input_pixels(size):
    geometry = GEOMETRIES["qwen2-vl"]
    image = torch.rand(3, *size, requires_grad=True)
    pixel_values, _ = preprocess([image], geometry)
    (pixel_values * torch.randn_like(pixel_values)).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0

    image.grad = None
    pixel_values, _ = preprocess([image], geometry)
    pixel_values.sum().backward()
    assert image.grad.abs().sum() > 0


def test_gradient_of_an_unresized_image_is_the_patch_layout():
    """Every pixel appears temporal_patch_size times, scaled by 1/std of its channel."""
    geometry = GEOMETRIES["qwen2-vl"]
    image = torch.rand(3, 56, 84, requires_grad=True)
    pixel_values, _ = preprocess([image], geometry)
    pixel_values.sum().backward()
    expected = geometry.temporal_patch_size / torch.tensor(OPENAI_CLIP_STD)[:, None, None]
    torch.testing.assert_close(image.grad, expected.expand_as(image.grad))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_target_size_is_smart_resize(name):
    geometry = GEOMETRIES[name]
    factor = geometry.patch_size * geometry.merge_size
    sizes = [(1, 1), (10, 500), (28, 28), (56, 57), (99, 101), (480, 640), (1024, 1024), (4000, 3000), (2000, 15)]
    for height, width in sizes:
        expected = smart_resize(height, width, factor=factor, min_pixels=geometry.min_pixels,
                                max_pixels=geometry.max_pixels)
        assert target_size(height, width, geometry) == expected, (height, width)


def test_explicit_sizes_override_the_target_size():
    geometry = GEOMETRIES["qwen2-vl"]
    pixel_values, grid = preprocess([torch.rand(3, 100, 100), torch.rand(3, 30, 40)], geometry,
                                    sizes=[(56, 112), (56, 56)])
    assert grid.tolist() == [[1, 4, 8], [1, 4, 4]]
    assert pixel_values.shape == (32 + 16, 3 * 2 * 14 * 14)
    with pytest.raises(ValueError, match="multiple of 28"):
        preprocess([torch.rand(3, 60, 60)], geometry, sizes=[(60, 60)])


def test_bad_images_are_refused():
    geometry = GEOMETRIES["qwen2-vl"]
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        preprocess([torch.rand(1, 3, 56, 56)], geometry)
    with pytest.raises(ValueError, match="float"):
        preprocess([torch.zeros(3, 56, 56, dtype=torch.uint8)], geometry)
    with pytest.raises(ValueError, match="no images"):
        preprocess([], geometry)


def test_geometry_from_a_model_config_and_back_from_a_dict():
    from transformers import Qwen2_5_VLConfig

    config = Qwen2_5_VLConfig(vision_config={"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2})
    geometry = VisionGeometry.from_model_config(config, max_pixels=512 * 512)
    assert (geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size) == (16, 2, 2)
    assert geometry.max_pixels == 512 * 512 and geometry.image_mean == OPENAI_CLIP_MEAN
    assert VisionGeometry.from_dict(geometry.to_dict()) == geometry
    with pytest.raises(ValueError, match="min_pixels"):
        VisionGeometry(min_pixels=100, max_pixels=10)
