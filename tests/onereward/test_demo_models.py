"""`seed_demo` builds the demo models once, through the real save code, and registers them: a CPU
baseline and a FLUX Fill generator on the small model, and the small judge as the default base
model of reward-model runs. Each loads back through the loading code the workers use."""
import numpy as np
import pytest
import torch
from django.core.management import call_command
from PIL import Image

from generation.core.backends.base import CandidateSettings, GenerationRequest
from generation.core.demo_flux import save_tiny_flux_fill
from generation.demo import CPU_BASELINE, DEMO_RL_INITIAL, FLUX_DEMO, SEED
from generation.execution import backend_for
from generation.models import Generator
from inputs.models import Input
from rewardmodel.core.judge import Judge
from rewardmodel.demo import demo_judge_dir
from rewardmodel.models import RewardModelRun

pytestmark = pytest.mark.django_db


def seed(tmp_path, *args) -> str:
    out = tmp_path / "out.txt"
    with open(out, "w") as stream:
        call_command("seed_demo", *args, stdout=stream)
    return out.read_text()


def test_the_demo_models_are_built_once_registered_and_load(tmp_path, settings, make_user, client):
    settings.DATA_DIR = tmp_path
    settings.ONEREWARD_DEMO_MODELS_DIR = tmp_path / "demo-models"
    assert RewardModelRun().base_model == "Qwen/Qwen2.5-VL-7B-Instruct"  # before the demo judge exists
    output = seed(tmp_path)
    assert "Demo FLUX Fill model built" in output and "Demo judge built" in output, output
    # The logins are still what the logins file and the printed list hold.
    logins = (tmp_path / "demo-logins.txt").read_text().splitlines()
    assert [line.split()[0] for line in logins] == ["admin", "mlengineer", "annotator1", "annotator2"]
    flux = Generator.objects.get(name=FLUX_DEMO)
    assert flux.backend == "flux_fill" and "demo model" in flux.description and "demo" in flux.name.lower()
    assert Generator.objects.get(name=CPU_BASELINE).backend == "cpu_baseline"
    assert RewardModelRun().base_model == str(demo_judge_dir())  # the default, now that it exists

    # The generator as a worker loads it, on a demo input: a candidate of the canvas's size that
    # keeps the unmasked pixels and differs from the source under the mask.
    item = Input.objects.filter(task__slug="image_fill").first()
    source = Image.open(item.source).convert("RGB")
    mask = Image.open(item.mask).convert("L")
    request = GenerationRequest(image=source, mask=mask, prompt=item.prompt, task="fill",
                                settings=CandidateSettings(seed=1, steps=2))
    candidate = backend_for(flux).generate([request])[0]
    assert candidate.size == source.size
    inside = np.asarray(mask) > 127
    assert np.abs(np.asarray(candidate, dtype=float) - np.asarray(source, dtype=float))[inside].mean() > 5
    np.testing.assert_array_equal(np.asarray(candidate)[~inside], np.asarray(source)[~inside])
    # Its VAE is fitted: seeds fill the mask with brightness that differs between seeds several times
    # more than with the same model's random VAE, measured here on the same input (a random VAE's
    # candidates barely differ in brightness, too little for any preference to learn).
    random_vae = save_tiny_flux_fill(tmp_path / "raw", seed=SEED)
    raw = Generator.objects.create(name="random VAE", backend="flux_fill",
                                   settings={**flux.settings, "base": str(random_vae)})

    def brightness_spread(generator) -> float:
        images = backend_for(generator).generate([
            GenerationRequest(image=source, mask=mask, prompt=item.prompt, task="fill",
                              settings=CandidateSettings(seed=seed, steps=2)) for seed in range(1, 7)])
        return float(np.std([np.asarray(image, dtype=float)[inside].mean() / 255 for image in images]))

    fitted, unfitted = brightness_spread(flux), brightness_spread(raw)
    assert fitted > 2 * unfitted, (fitted, unfitted)
    raw.delete()

    # The judge as a trainer loads it: a probability for a pair, in both orders.
    judge = Judge.from_pretrained(str(demo_judge_dir()), device="cpu")
    image = torch.rand(3, 56, 56)
    scores = judge.score([image], [image.flip(-1)], ["Is the first image better than the second image? Answer Yes "
                                                      "or No."], both_orders=True)
    assert 0 < float(scores["p_yes_renormalised"][0]) < 1

    # The run forms start from settings that finish on a CPU when the demo models are chosen.
    client.force_login(make_user("eve", "ml_engineer"))
    form = client.get("/admin/rewardmodel/rewardmodelrun/add/").context["adminform"].form
    assert form.initial["learning_rate"] == 1e-4 and "demo judge" in form.fields["base_model"].help_text
    form = client.get("/admin/rl/rlrun/add/").context["adminform"].form
    assert form.initial["base_generator"] == flux.pk and form.initial["max_steps"] == DEMO_RL_INITIAL["max_steps"]
    assert form.initial["learning_rate"] == DEMO_RL_INITIAL["learning_rate"]
    assert form.initial["extra"]["rollout"]["steps"] == DEMO_RL_INITIAL["extra"]["rollout"]["steps"]

    stamp = (demo_judge_dir() / "config.json").stat().st_mtime_ns
    again = seed(tmp_path)
    assert "Demo FLUX Fill model kept" in again and "Demo judge kept" in again
    assert (demo_judge_dir() / "config.json").stat().st_mtime_ns == stamp
    assert Generator.objects.filter(name__in=[FLUX_DEMO, CPU_BASELINE]).count() == 2
