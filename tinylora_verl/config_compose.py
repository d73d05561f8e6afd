"""Compose our Hydra configs without running anything (tests, `--cfg`-like inspection from Python)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .main import CONFIG_DIR, DEFAULT_CONFIG


def compose(
    name: str = DEFAULT_CONFIG, overrides: list[str] | None = None, resolve: bool = True
) -> DictConfig:
    """The config `name` from config/ with Hydra overrides, resolved by default."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = hydra_compose(config_name=name, overrides=list(overrides or []))
    if resolve:
        OmegaConf.resolve(cfg)
    return cfg
