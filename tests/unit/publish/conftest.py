"""The packaging tests' update tarballs, made the way `create` lays them out."""

from tests.unit.package.conftest import make_update, module_ko

__all__ = ["make_update", "module_ko"]
