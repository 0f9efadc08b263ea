"""What the distribution declares: entry points for every extractor and a transform for every zoo key."""

from importlib import metadata

from omlcore.registry import Registry

EXTRACTORS = {"vit", "resnet", "vit_clip", "vit_unicom", "extractor_with_mlp", "efficientnet_lite0"}


def test_every_extractor_is_registered_and_resolves(installed_registry: Registry) -> None:
    assert set(installed_registry.available("extractor")) >= EXTRACTORS
    for name in EXTRACTORS:
        cls = installed_registry.resolve("extractor", name)
        assert cls.registry_name == name


def test_every_zoo_key_has_an_evaluation_transform() -> None:
    """omlcore-images' get_transforms_for_pretrained(key) serves every built-in zoo key (three torchvision
    keys are declared by omlcore-images itself; the rest by this distribution)."""
    from omlcore_extractors.zoo import ZOO
    from omlcore_images import available_pretrained_transforms

    assert set(ZOO) <= set(available_pretrained_transforms())
    ours = {
        ep.name
        for ep in metadata.entry_points(group="omlcore.pretrained_transforms")
        if ep.dist is not None and ep.dist.name == "omlcore-extractors"
    }
    assert ours <= set(ZOO), f"entry points for keys that are not in the zoo: {sorted(ours - set(ZOO))}"


def test_the_cli_hook_adds_embed_and_zoo() -> None:
    import argparse

    from omlcore_extractors.hooks import omlcore_add_commands

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    omlcore_add_commands(sub)
    assert {"embed", "zoo"} <= set(sub.choices)
