"""Builds the optional C hot paths; everything else is configured in pyproject.toml.

If an extension cannot be compiled (no compiler on a device), installation continues and edge
falls back to Pillow (resizing) and numpy (top-k), which give identical results more slowly.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self.warn(f"C extensions not built ({exc}); edge falls back to Pillow and numpy")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.warn(f"{ext.name} not built ({exc}); edge falls back to Pillow / numpy for it")


setup(
    ext_modules=[
        Extension("edge._resample", ["edge/_resample.c"], extra_compile_args=["-O3"]),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
