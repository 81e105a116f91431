"""The generators of the demo (seed_demo): the CPU baseline and FLUX Fill on the demo model (a
small pipeline with random weights, generation/core/demo_flux.py), built once into the demo
models directory through diffusers' own save and load code."""
from django.dispatch import receiver

from onereward.demo import DEMO_LABEL, build_once, demo_models_dir, seeding_demo

from .models import Generator

CPU_BASELINE = "CPU baseline"
FLUX_DEMO = "FLUX Fill (demo model)"
SEED = 0
# Steps of fitting the demo VAE (demo_flux.fit_vae): its candidates then differ visibly in
# brightness and colour, which people and the simulated annotators' oracles can prefer.
DEMO_VAE_STEPS = 300
# An RL run of the demo generator starts from these (the field defaults are the 12B model's, for
# 8000 steps of 50-step rollouts at lr 1e-5): short rollouts with FLUX Fill's usual guidance, a few
# steps, and the learning rate the small random model needs to move at all (as in the loop test,
# tests/rl/oracle_world.py).
DEMO_RL_INITIAL = {"max_steps": 24, "batch_size": 2, "save_every": 12, "lora_rank": 4, "learning_rate": 3e-2,
                   "extra": {"rollout": {"steps": 4, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""},
                             "log_every": 1}}


def is_demo_generator(generator) -> bool:
    """Whether a generator runs on the demo model (the demo generator, or a checkpoint trained from it)."""
    return generator.backend == "flux_fill" and generator.settings.get("base") == str(demo_models_dir() / "flux-fill")


def demo_flux_dir():
    # torch and diffusers load here, when a demo is seeded, and never in the web processes.
    from .core.demo_flux import save_tiny_flux_fill

    return build_once("flux-fill", "model_index.json",
                      lambda directory: save_tiny_flux_fill(directory, seed=SEED, fit_vae_steps=DEMO_VAE_STEPS))


@receiver(seeding_demo, dispatch_uid="generation-demo-generators")
def seed_demo_generators(sender, **kwargs) -> list[str]:
    directory, built = demo_flux_dir()
    Generator.objects.update_or_create(name=CPU_BASELINE, defaults={
        "backend": "cpu_baseline", "settings": {}, "active": True,
        "description": "Fills the mask from its surroundings on the CPU: a baseline, no model."})
    Generator.objects.update_or_create(name=FLUX_DEMO, defaults={
        "backend": "flux_fill", "active": True,
        "settings": {"base": str(directory), "dtype": "float32", "composite_source": True},
        "description": f"FLUX.1 Fill's layout at toy size ({DEMO_LABEL}): it runs the whole loop on a CPU; it "
                       "fills the mask with smooth colour fields that differ from seed to seed in brightness and "
                       "colour, not with pictures. Register FLUX.1-Fill-dev for real edits."})
    return [f"Demo FLUX Fill model {'built' if built else 'kept'} in {directory}; generators "
            f"'{CPU_BASELINE}' and '{FLUX_DEMO}' registered."]
