"""Validated configuration (pydantic v2). One module per concern; `root.AppConfig` joins them."""

from crowdwatch.config.root import AppConfig, load_config

__all__ = ["AppConfig", "load_config"]
